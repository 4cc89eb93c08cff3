"""Make split files for a canonical data folder; val never takes a test image.

    # re-derive a published protocol of a folder written by tools/prepare_dataset.py
    python tools/make_splits.py DATA_ROOT --protocol {drive,chase_20_8,chase_8_20,stare_10_10,
                                stare_loo,hrf_15_30,fives,xcad_kfold} [--k K] [--val-fraction 0.2] [--seed 0]
    # a custom set: group-aware train/val, or k folds
    python tools/make_splits.py DATA_ROOT [--group-regex 'Image_(\\d+)'] [--val-fraction 0.2 | --k 5]
                                [--seed 0] [--from-split trainval]

--protocol reads manifest.json and rewrites every split file and splits/PROTOCOL.md.
Otherwise the stems come from splits/<from-split>.txt (default: trainval.txt when present, else
every file in images/ that splits/test.txt does not list); test stems there are an error. It
writes splits/train.txt + val.txt, or with --k (only for sets without a test split):
fold<i>_{trainval,train,val,test}.txt, fold i's test being the held-out fold and its val taken
from the other folds. No group ever appears on two sides. The command is appended to
splits/PROTOCOL.md.
Without --group-regex, the patients that prepare_dataset.py recorded in manifest.json are the
groups: each patient stays inside one split, the frames of each video in order; the tool prints
the frames, patients and videos of each split.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.grouping import (
    frame_order,
    kfold_by_patient,
    manifest_groups,  # noqa: E402
    split_by_patient,
    split_summary,
)
from projects.sa2va_vessel.datasets.protocols import (
    DEFAULT_VAL_FRACTION,
    PROTOCOLS,  # noqa: E402
    protocol_splits,
    write_protocol,
)
from projects.sa2va_vessel.datasets.splits import kfold_splits, split_by_groups, write_split_files  # noqa: E402


def _from_protocol(root: Path, args: argparse.Namespace) -> dict:
    path = root / 'manifest.json'
    if not path.is_file():
        raise ValueError(f'{path}: not found; --protocol needs a folder written by tools/prepare_dataset.py')
    manifest = json.loads(path.read_text())
    splits, record = protocol_splits(
        manifest['source'], manifest['samples'], args.protocol, args.val_fraction, args.seed, args.k
    )
    write_protocol(root, splits, record)
    manifest['protocol'] = record
    manifest['splits'] = {name: len(v) for name, v in splits.items()}
    path.write_text(json.dumps(manifest, indent=1) + '\n')
    return splits


def _custom(root: Path, args: argparse.Namespace) -> dict:
    from projects.sa2va_vessel.datasets.vessel_dataset import read_split  # torch: not for --help

    test_file = root / 'splits' / 'test.txt'
    test = set(read_split(test_file)) if test_file.is_file() else set()
    source = args.from_split or ('trainval' if (root / 'splits' / 'trainval.txt').is_file() else None)
    if source:
        stems = read_split(root / 'splits' / f'{source}.txt')
    else:
        stems = (
            sorted(f.stem for f in (root / 'images').iterdir() if f.is_file() and f.stem not in test)
            if (root / 'images').is_dir()
            else []
        )
    if not stems:
        raise ValueError(f'no samples found under {root}')
    leaked = sorted(set(stems) & test)
    if leaked:
        raise ValueError(
            f'splits/{source}.txt lists {len(leaked)} test sample(s) ({", ".join(leaked[:5])}); '
            'val must come from the training part only'
        )
    groups = {} if args.group_regex else manifest_groups(root)  # patients recorded by prepare
    patient_of = {s: g.patient for s, g in groups.items() if s in set(stems)}
    if groups:
        print(f'groups: the patients of {root / "manifest.json"}')

    def train_val(part):
        if groups:
            return split_by_patient(part, patient_of, args.val_fraction, args.seed)
        return split_by_groups(part, args.val_fraction, args.group_regex, args.seed)

    if args.k:
        if test:
            raise ValueError(
                f'{test_file} exists: this set has a fixed test split; k-fold is for sets '
                'without one (or use --protocol for a published k-fold protocol)'
            )
        out = {}
        folds = (
            kfold_by_patient(stems, patient_of, args.k, args.seed)
            if groups
            else kfold_splits(stems, args.k, args.group_regex, args.seed)
        )
        for i, (rest, held_out) in enumerate(folds):
            train, val = train_val(rest)
            out.update(
                {f'fold{i}_trainval': rest, f'fold{i}_train': train, f'fold{i}_val': val, f'fold{i}_test': held_out}
            )
    else:
        train, val = train_val(stems)
        out = {'train': train, 'val': val}
    if groups:
        out = {name: frame_order(s, groups) for name, s in out.items()}  # video frames stay in order
        for line in split_summary(out, groups):
            print(line)
    write_split_files(root, out)
    note = root / 'splits' / 'PROTOCOL.md'
    with open(note, 'a') as f:
        f.write(
            f'\n## make_splits (custom)\n\n`{" ".join(sys.argv[1:]) or "make_splits"}`: from '
            f'{"splits/" + source + ".txt" if source else "images/ minus test"}, val fraction '
            f'{args.val_fraction}, seed {args.seed}, group regex {args.group_regex!r}; wrote '
            f'{", ".join(f"{k} ({len(v)})" for k, v in out.items())}\n'
        )
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('data_root', type=Path)
    p.add_argument('--protocol', choices=sorted(PROTOCOLS), help='re-derive a published protocol (manifest.json)')
    p.add_argument('--group-regex', default=None, help="regex whose first group names a sample's group")
    p.add_argument('--val-fraction', type=float, default=DEFAULT_VAL_FRACTION)
    p.add_argument('--k', type=int, default=None, help='k folds instead of one split')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--from-split', default=None, help='take stems from splits/<name>.txt')
    args = p.parse_args(argv)
    try:
        out = _from_protocol(args.data_root, args) if args.protocol else _custom(args.data_root, args)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    for name, s in out.items():
        print(f'{name}: {len(s)} samples')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

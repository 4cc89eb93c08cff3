"""Make group-aware train/val split files for a canonical data folder.

    python tools/make_splits.py DATA_ROOT [--group-regex 'Image_(\\d+)'] [--val-fraction 0.25 | --k 5]
                                [--seed 0] [--from-split all]

Reads the stems from splits/<from-split>.txt (default: every file in images/), then writes
splits/train.txt + splits/val.txt, or with --k: splits/fold<i>_train.txt + fold<i>_val.txt.
No group ever appears in both halves. Without --group-regex, the patients that
prepare_dataset.py recorded in manifest.json (--group-regex/--groups there) are the groups:
each patient stays inside one split, the frames of each video in order; the tool prints the
frames, patients and videos of each split.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.grouping import (frame_order, kfold_by_patient, manifest_groups,  # noqa: E402
                                                     split_by_patient, split_summary)
from projects.sa2va_vessel.datasets.progress import progress  # noqa: E402
from projects.sa2va_vessel.datasets.splits import kfold_splits, split_by_groups, write_split_files  # noqa: E402
from projects.sa2va_vessel.datasets.vessel_dataset import read_split  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_root", type=Path)
    p.add_argument("--group-regex", default=None, help="regex whose first group names a sample's group")
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--k", type=int, default=None, help="k-fold instead of one split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--from-split", default=None, help="take stems from splits/<name>.txt")
    args = p.parse_args(argv)
    if args.from_split:
        stems = read_split(args.data_root / "splits" / f"{args.from_split}.txt")
    else:
        stems = sorted(f.stem for f in progress(list((args.data_root / "images").iterdir()), desc="list images")
                       if f.is_file())
    if not stems:
        print(f"error: no samples found under {args.data_root}", file=sys.stderr)
        return 2
    try:
        groups = {} if args.group_regex else manifest_groups(args.data_root)
        patient_of = {s: g.patient for s, g in groups.items()}
        if groups:
            print(f"groups: the patients of {args.data_root / 'manifest.json'}")
        if args.k:
            folds = (kfold_by_patient(stems, patient_of, args.k, args.seed) if groups
                     else kfold_splits(stems, args.k, args.group_regex, args.seed))
            out = {}
            for i, (train, val) in enumerate(folds):
                out[f"fold{i}_train"], out[f"fold{i}_val"] = train, val
        else:
            train, val = (split_by_patient(stems, patient_of, args.val_fraction, args.seed) if groups
                          else split_by_groups(stems, args.val_fraction, args.group_regex, args.seed))
            out = {"train": train, "val": val}
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if groups:
        out = {name: frame_order(s, groups) for name, s in out.items()}  # video frames stay in order
    write_split_files(args.data_root, out)
    if groups:
        for line in split_summary(out, groups):
            print(line)
    else:
        for name, s in out.items():
            print(f"{name}: {len(s)} samples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

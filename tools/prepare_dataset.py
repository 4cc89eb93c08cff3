"""Convert a public vessel data set folder, or your own annotations, into the canonical layout.

    python tools/prepare_dataset.py {drive,chase_db1,stare,hrf,fives,xcad} SRC_DIR OUT_DIR
           [--protocol NAME] [--k K] [--estimate-fov] [--val-fraction 0.2] [--seed 0] [--overwrite]
           [--skip-bad-masks] [--max-vessel-fraction 0.5] [--allow-non-binary]
           [--allow-large-images]
    python tools/prepare_dataset.py labelme SRC_DIR OUT_DIR [--labels ...] [--line-width 3] ...
    python tools/prepare_dataset.py coco SRC_JSON IMAGES_DIR OUT_DIR [--per-category] ...
    python tools/prepare_dataset.py arcade SRC_DIR OUT_DIR [--per-category] ...
           (`prepare_dataset.py labelme -h` etc. list the options: --on-error, --group-regex, --groups)

Writes OUT_DIR/images, masks, fov (when available), splits/*.txt, splits/PROTOCOL.md and
manifest.json, all at once (a failed run leaves no OUT_DIR). A non-empty OUT_DIR is refused unless --overwrite, which
replaces it whole. Every mask is checked (empty, all-vessel, mostly vessel, non-binary, alpha
channel, 16-bit range: datasets/mask_validation.py); a bad one stops the run listing every bad
mask, or with --skip-bad-masks is left out and listed. Source files left unpaired are listed
here and in the manifest.
Exit status: 0 written, 2 refused (nothing written).

Splits follow the data set's published protocol (default: the first below);
val is always taken from its training part (seeded, whole groups), never from test:

  drive        DRIVE official split: 20 training images (21-40) / 20 test images (01-20)
  chase_20_8   CHASE_DB1 sorted by name: first 20 images (children 01-10) train, last 8 (children 11-14) test
  chase_8_20   CHASE_DB1 sorted by name: first 8 images (children 01-04) train, last 20 (children 05-14) test
  stare_10_10  STARE sorted by number: first 10 images train, last 10 test
  stare_loo    STARE leave-one-out: 20 folds, fold i tests the i-th image (sorted)
  hrf_15_30    HRF: images 01-05 of each class (h, g, dr) train (15), images 06-15 of each class test (30)
  fives        FIVES official folders: train (600) / test (200)
  xcad_kfold   XCAD labelled part (its test/ folder): seeded k-fold over images

See projects/sa2va_vessel/datasets/prepare.py for the expected source layouts and
projects/sa2va_vessel/datasets/protocols.py for the protocols.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.mask_validation import MaskRules  # noqa: E402
from projects.sa2va_vessel.datasets.prepare import LAYOUTS, prepare_dataset  # noqa: E402
from projects.sa2va_vessel.datasets.prepare_annotated_cli import ANNOTATED_SOURCES, annotated_main  # noqa: E402
from projects.sa2va_vessel.datasets.protocols import DEFAULT_VAL_FRACTION, PROTOCOLS  # noqa: E402
from projects.sa2va_vessel.datasets.readers import DataReadError  # noqa: E402


def add_output_options(p: argparse.ArgumentParser) -> None:
    """The options every preparation command shares (output folder, mask rules, pixel limit)."""
    p.add_argument('--overwrite', action='store_true', help='replace a non-empty OUT_DIR whole')
    p.add_argument(
        '--skip-bad-masks',
        action='store_true',
        help='leave samples with a bad mask out (listed in the manifest) instead of stopping',
    )
    p.add_argument(
        '--max-vessel-fraction',
        type=float,
        default=MaskRules.max_vessel_fraction,
        help='refuse masks with more vessel than this fraction of the FOV (default 0.5)',
    )
    p.add_argument(
        '--allow-non-binary',
        action='store_true',
        help='accept masks with more than two values (binarised at > 127; listed as warnings)',
    )
    p.add_argument(
        '--allow-large-images', action='store_true', help="read images above PIL's pixel limit (trusted files only)"
    )


def print_report(manifest: dict, out: Path, max_lines: int = 20) -> None:
    """What was written, left unpaired and skipped (the manifest holds the full lists)."""
    protocol = (manifest.get('protocol') or {}).get('name')
    print(
        f'{manifest["source"]}: {manifest["n_samples"]} samples -> {out}'
        + (f'; protocol {protocol}' if protocol else '')
        + f'; splits {manifest["splits"]}'
    )
    for key, title in (
        ('unpaired', 'unpaired source files (not prepared)'),
        ('skipped', 'skipped masks'),
        ('warnings', 'warnings'),
    ):
        items = manifest.get(key) or []
        if not items:
            continue
        print(f'{len(items)} {title}:')
        for item in items[:max_lines]:
            if isinstance(item, dict) and 'missing' in item:
                print(f'  {item["file"]}: {item["kind"]} without {item["missing"]}')
            elif isinstance(item, dict):
                print(f'  {item["mask"]}: {"; ".join(item["problems"])}')
            else:
                print(f'  {item}')
        if len(items) > max_lines:
            print(f'  ... {len(items) - max_lines} more (manifest.json lists all)')


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ANNOTATED_SOURCES:  # LabelMe / COCO / ARCADE: their own options
        return annotated_main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('dataset', choices=sorted(LAYOUTS) + list(ANNOTATED_SOURCES))
    p.add_argument('src', type=Path)
    p.add_argument('out', type=Path)
    p.add_argument('--estimate-fov', action='store_true', help='threshold a FOV where the source has none')
    p.add_argument('--protocol', choices=sorted(PROTOCOLS), help="split protocol (default: the data set's first)")
    p.add_argument('--k', type=int, default=None, help='folds of a k-fold protocol (xcad_kfold: default 5)')
    p.add_argument(
        '--val-fraction',
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help='share of the training part held out as val (default %(default)s)',
    )
    p.add_argument('--seed', type=int, default=0, help='seed of the val split and of k-fold assignment')
    add_output_options(p)
    args = p.parse_args(argv)
    try:
        rules = MaskRules(args.max_vessel_fraction, args.allow_non_binary)
        manifest = prepare_dataset(
            args.dataset,
            args.src,
            args.out,
            args.estimate_fov,
            args.val_fraction,
            args.seed,
            overwrite=args.overwrite,
            mask_rules=rules,
            protocol=args.protocol,
            k=args.k,
            skip_bad_masks=args.skip_bad_masks,
            allow_large_images=args.allow_large_images,
        )
    except (FileNotFoundError, FileExistsError, KeyError, ValueError, DataReadError) as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    print_report(manifest, args.out)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

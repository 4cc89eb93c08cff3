"""Convert a public vessel data set folder, or your own annotations, into the canonical layout.

    python tools/prepare_dataset.py {drive,chase_db1,stare,hrf,fives,xcad} SRC_DIR OUT_DIR
           [--estimate-fov] [--val-fraction 0.25] [--seed 0]
    python tools/prepare_dataset.py labelme SRC_DIR OUT_DIR [--labels ...] [--line-width 3] ...
    python tools/prepare_dataset.py coco SRC_JSON IMAGES_DIR OUT_DIR [--per-category] ...
    python tools/prepare_dataset.py arcade SRC_DIR OUT_DIR [--per-category] ...
           (`prepare_dataset.py labelme -h` etc. list the options: --on-error, --group-regex, --groups)

Writes OUT_DIR/images, masks, fov (when available), splits/*.txt and manifest.json.
See projects/sa2va_vessel/datasets/prepare.py for the expected source layouts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.prepare import LAYOUTS, prepare_dataset  # noqa: E402
from projects.sa2va_vessel.datasets.prepare_annotated_cli import ANNOTATED_SOURCES, annotated_main  # noqa: E402
from projects.sa2va_vessel.datasets.readers import DataReadError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ANNOTATED_SOURCES:  # LabelMe / COCO / ARCADE: their own options
        return annotated_main(argv)
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", choices=sorted(LAYOUTS) + list(ANNOTATED_SOURCES))
    p.add_argument("src", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--estimate-fov", action="store_true", help="threshold a FOV where the source has none")
    p.add_argument("--val-fraction", type=float, default=0.25)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        manifest = prepare_dataset(args.dataset, args.src, args.out, args.estimate_fov, args.val_fraction, args.seed)
    except (FileNotFoundError, KeyError, ValueError, DataReadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.dataset}: {manifest['n_samples']} samples -> {args.out}; splits {manifest['splits']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

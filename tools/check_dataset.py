"""Check a canonical vessel data folder; exit code 1 when there is any error.

    python tools/check_dataset.py DATA_ROOT [--group-regex 'Image_(\\d+)'] [--max-details 20]
           [--max-vessel-fraction 0.5] [--allow-non-binary] [--allow-large-images]

Files are resolved and masks judged exactly as the training dataset does (datasets/files.py,
datasets/mask_validation.py); pass it the same mask rules as the dataset config.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.check import check_dataset  # noqa: E402
from projects.sa2va_vessel.datasets.mask_validation import MaskRules  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_root", type=Path)
    p.add_argument("--group-regex", default=None)
    p.add_argument("--max-details", type=int, default=20)
    p.add_argument("--max-vessel-fraction", type=float, default=MaskRules.max_vessel_fraction,
                   help="a mask with more vessel than this fraction of the FOV is an error (default 0.5)")
    p.add_argument("--allow-non-binary", action="store_true",
                   help="masks with more than two values are warnings, not errors")
    p.add_argument("--allow-large-images", action="store_true", help="read images above PIL's pixel limit")
    args = p.parse_args(argv)
    rules = MaskRules(args.max_vessel_fraction, args.allow_non_binary)
    report = check_dataset(args.data_root, args.group_regex, rules, args.allow_large_images)
    print(report.table(args.max_details))
    return 1 if report.n_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Check a canonical vessel data folder; exit code 1 when there is any error.

    python tools/check_dataset.py DATA_ROOT [--group-regex 'Image_(\\d+)'] [--max-details 20]
           [--max-vessel-fraction 0.5] [--allow-non-binary] [--allow-large-images]
           [--sheet sheet.png [--sheet-thumb 160] [--sheet-columns 8]]

Files are resolved and masks judged exactly as the training dataset does (datasets/files.py,
datasets/mask_validation.py); pass it the same mask rules as the dataset config.

--sheet writes a contact sheet: every image with its mask outline, flagged files (check issues,
rescaled annotation frames, skipped shapes from manifest.json) first, file names underneath.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.check import check_dataset  # noqa: E402
from projects.sa2va_vessel.datasets.contact_sheet import (
    manifest_flags,
    merge_flags,
    report_flags,  # noqa: E402
    write_contact_sheet,
)
from projects.sa2va_vessel.datasets.grouping import patient_split_problems  # noqa: E402
from projects.sa2va_vessel.datasets.mask_validation import MaskRules  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('data_root', type=Path)
    p.add_argument('--group-regex', default=None)
    p.add_argument('--max-details', type=int, default=20)
    p.add_argument(
        '--max-vessel-fraction',
        type=float,
        default=MaskRules.max_vessel_fraction,
        help='a mask with more vessel than this fraction of the FOV is an error (default 0.5)',
    )
    p.add_argument(
        '--allow-non-binary', action='store_true', help='masks with more than two values are warnings, not errors'
    )
    p.add_argument('--allow-large-images', action='store_true', help="read images above PIL's pixel limit")
    p.add_argument('--sheet', type=Path, default=None, help='write a contact sheet PNG here')
    p.add_argument('--sheet-thumb', type=int, default=160)
    p.add_argument('--sheet-columns', type=int, default=8)
    args = p.parse_args(argv)
    rules = MaskRules(args.max_vessel_fraction, args.allow_non_binary)
    report = check_dataset(args.data_root, args.group_regex, rules, args.allow_large_images)
    for problem in patient_split_problems(args.data_root):  # patients recorded by prepare_dataset.py
        report.add('error', 'patient crosses splits', args.data_root / 'splits', problem)
    print(report.table(args.max_details))
    if args.sheet is not None and (args.data_root / 'images').is_dir():
        flags = merge_flags(report_flags(report.issues, args.data_root), manifest_flags(args.data_root))
        write_contact_sheet(args.data_root, args.sheet, flags, args.sheet_thumb, args.sheet_columns)
        print(f'contact sheet: {args.sheet} ({len(flags)} flagged first)')
    return 1 if report.n_errors else 0


if __name__ == '__main__':
    raise SystemExit(main())

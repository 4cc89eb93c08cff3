"""Check a canonical vessel data folder; exit code 1 when there is any error.

    python tools/check_dataset.py DATA_ROOT [--group-regex 'Image_(\\d+)'] [--max-details 20]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.check import check_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_root", type=Path)
    p.add_argument("--group-regex", default=None)
    p.add_argument("--max-details", type=int, default=20)
    args = p.parse_args(argv)
    report = check_dataset(args.data_root, args.group_regex)
    print(report.table(args.max_details))
    return 1 if report.n_errors else 0


if __name__ == "__main__":
    raise SystemExit(main())

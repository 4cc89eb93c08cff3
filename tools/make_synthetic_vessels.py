"""Write a seeded synthetic vessel data set in the canonical layout.

    python tools/make_synthetic_vessels.py OUT_DIR --n 32 --seed 0 [--size 512] [--val-fraction 0.25]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n", type=int, required=True, help="number of samples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=512, help="square image side in pixels")
    parser.add_argument("--val-fraction", type=float, default=0.25)
    args = parser.parse_args(argv)
    train, val = write_synthetic_dataset(args.out_dir, args.n, args.seed, args.size, args.val_fraction)
    print(f"wrote {len(train) + len(val)} samples to {args.out_dir} (train {len(train)}, val {len(val)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

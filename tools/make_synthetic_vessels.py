"""Write a seeded synthetic vessel data set in the canonical layout.

    python tools/make_synthetic_vessels.py OUT_DIR --n 32 --seed 0 [--size 512] [--val-fraction 0.25]
    python tools/make_synthetic_vessels.py OUT_DIR --videos 5 --frames 3 [--label-every 1] [--size 64]

--videos writes moving sequences instead (datasets/synthetic_video.py: a deforming tree whose
contrast washes in and out), frames named <video>_f<index>, every frame of a video in one split.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset  # noqa: E402
from projects.sa2va_vessel.datasets.synthetic_video import write_synthetic_video_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir', type=Path)
    kind = parser.add_mutually_exclusive_group(required=True)
    kind.add_argument('--n', type=int, help='number of (still) samples')
    kind.add_argument('--videos', type=int, help='number of moving sequences')
    parser.add_argument('--frames', type=int, default=8, help='--videos: frames per sequence (default 8)')
    parser.add_argument(
        '--label-every', type=int, default=1, help='--videos: only every k-th frame gets a mask (default 1: all)'
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=512, help='square image side in pixels')
    parser.add_argument('--val-fraction', type=float, default=0.25)
    args = parser.parse_args(argv)
    if args.videos is not None:
        train, val = write_synthetic_video_dataset(
            args.out_dir, args.videos, args.frames, args.seed, args.size, args.val_fraction, args.label_every
        )
        print(
            f'wrote {len(train) + len(val)} sequences of {args.frames} frames to {args.out_dir} '
            f'(train {", ".join(train)}; val {", ".join(val)})'
        )
        return 0
    train, val = write_synthetic_dataset(args.out_dir, args.n, args.seed, args.size, args.val_fraction)
    print(f'wrote {len(train) + len(val)} samples to {args.out_dir} (train {len(train)}, val {len(val)})')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

#!/usr/bin/env python
"""Write a random, seeded Sa2VA checkpoint in the official layout (no download involved).

    python tools/make_tiny_sa2va.py OUT_DIR [--seed N] [--preset tiny|sa2va-internvl3-2b|...]
"""
from __future__ import annotations

import argparse

from projects.sa2va_vessel.models.presets import PRESETS
from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--preset', default='tiny', choices=sorted(PRESETS))
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    parser.add_argument('--tokenizer', default=None,
                        help='copy this tokenizer directory instead of building the small built-in one')
    parser.add_argument('--video-memory', action='store_true',
                        help='also write SAM2 video-memory tensors (needed by predict.py --video)')
    args = parser.parse_args()
    out = write_random_sa2va(args.out_dir, preset=args.preset, seed=args.seed, dtype=args.dtype,
                             tokenizer_from=args.tokenizer, video_memory=args.video_memory)
    print(f'wrote {args.preset} Sa2VA checkpoint (seed {args.seed}) to {out}')


if __name__ == '__main__':
    main()

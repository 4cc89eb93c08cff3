#!/usr/bin/env python
"""Write a random, seeded Sa2VA checkpoint in the official layout (no download involved).

    python tools/make_tiny_sa2va.py OUT_DIR [--seed N] [--preset tiny|sa2va-internvl3-2b|...]
    python tools/make_tiny_sa2va.py OUT_DIR --family qwen2_5_vl|qwen3_vl   # tiny Qwen-VL Sa2VA

--family picks the tiny preset of that family (InternVL, Sa2VA-Qwen2.5-VL, Sa2VA-Qwen3-VL); a
--preset of another family is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.models.presets import PRESETS, QWEN_PRESETS, TINY_PRESET, preset_family  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('out_dir')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--preset',
        default=None,
        choices=sorted(PRESETS) + sorted(QWEN_PRESETS),
        help='default: the tiny preset of --family',
    )
    parser.add_argument(
        '--family',
        default=None,
        choices=sorted(TINY_PRESET),
        help='MLLM family (default internvl, or the family of --preset)',
    )
    parser.add_argument('--dtype', default='float32', choices=['float32', 'bfloat16'])
    parser.add_argument(
        '--tokenizer', default=None, help='copy this tokenizer directory instead of building the small built-in one'
    )
    parser.add_argument(
        '--video-memory',
        action='store_true',
        help='also write SAM2 video-memory tensors (needed by predict.py --video)',
    )
    args = parser.parse_args()
    if args.preset is None:
        args.preset = TINY_PRESET[args.family or 'internvl']
    elif args.family is not None and preset_family(args.preset) != args.family:
        parser.error(f'--preset {args.preset} is a {preset_family(args.preset)} preset, not {args.family}')
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va  # torch: after --help

    out = write_random_sa2va(
        args.out_dir,
        preset=args.preset,
        seed=args.seed,
        dtype=args.dtype,
        tokenizer_from=args.tokenizer,
        video_memory=args.video_memory,
    )
    print(f'wrote {args.preset} Sa2VA checkpoint (seed {args.seed}) to {out}')


if __name__ == '__main__':
    main()

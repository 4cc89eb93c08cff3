"""Benchmark the training step (and data loading) of the project's Sa2VA model; see docs/PERFORMANCE.md.

    python tools/benchmark.py --preset sa2va-internvl3-2b --batch-size 32 --image-size 512x512 \
        [--extra-batch-sizes 1,8] [--no-ladder] [--no-official] [--deepspeed] --out report.json
    python tools/benchmark.py --device cpu --preset tiny      # CI: tiny shapes on CPU, < 60 s
    python tools/benchmark.py --dataload-only --dataload-workers 0,2,8

Random weights at the preset's published shape (no downloads), synthetic batches. Prints a table
and writes the full report (JSON) to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(',') if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='sa2va-internvl3-2b')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--batch-size', type=int, default=None, help='default 32 on GPU, 2 on CPU')
    ap.add_argument('--image-size', default='512x512', help='HxW of the synthetic images (999x960 -> 9 tiles + thumbnail)')
    ap.add_argument('--warmup', type=int, default=None, help='default 3 (1 on CPU)')
    ap.add_argument('--steps', type=int, default=None, help='default 8 (2 on CPU)')
    ap.add_argument('--extra-batch-sizes', type=_ints, default=[], help='also time plain + fastest at these')
    ap.add_argument('--ladder', action=argparse.BooleanOptionalAction, default=None,
                    help='time the levers one at a time (default on GPU); --no-ladder: plain and the fastest only')
    ap.add_argument('--no-official', action='store_true', help='skip reference (a)')
    ap.add_argument('--no-fast', action='store_true', help='with --no-ladder: only the references')
    ap.add_argument('--frozen-cache', action='store_true', help='with --no-ladder: the fast configuration with the '
                    'frozen-feature cache warm (epoch >= 2 of an unaugmented data set)')
    ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--deepspeed', action='store_true', help='also time the fastest configuration under ZeRO-2')
    ap.add_argument('--dataload', action='store_true', help='also time VesselSegDataset + collate on CPU')
    ap.add_argument('--dataload-only', action='store_true')
    ap.add_argument('--dataload-workers', type=_ints, default=[0, 2])
    ap.add_argument('--dataload-sizes', type=_ints, default=[512, 1000])
    ap.add_argument('--dataload-n', type=int, default=64)
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args(argv)

    report: dict = {}
    if not args.dataload_only:
        import torch

        from projects.sa2va_vessel.benchmark.core import format_table, run_benchmark
        cuda = args.device.startswith('cuda')
        if cuda and not torch.cuda.is_available():
            ap.error('no CUDA device; use --device cpu --preset tiny')
        h, w = (int(x) for x in args.image_size.lower().split('x'))
        report = run_benchmark(
            args.preset, args.device, batch_size=args.batch_size or (32 if cuda else 2), image_hw=(h, w),
            warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
            steps=args.steps or (8 if cuda else 1), extra_batch_sizes=args.extra_batch_sizes,
            ladder=args.ladder if args.ladder is not None else cuda, official=not args.no_official, fast=not args.no_fast, frozen_cache=args.frozen_cache, deepspeed=args.deepspeed,
            compile_ok=cuda and not args.no_compile)
    if args.dataload or args.dataload_only:
        from projects.sa2va_vessel.benchmark.dataload import run_dataload
        report['dataload'] = run_dataload(sizes=args.dataload_sizes, workers=args.dataload_workers, n=args.dataload_n)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if 'results' in report:
        print(format_table(report))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

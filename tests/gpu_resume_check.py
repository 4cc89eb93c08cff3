"""Measure how exactly a preempted-and-resumed run repeats an uninterrupted one (any device).

    python tests/gpu_resume_check.py [--precision bf16|none] [--deterministic] [--at 5]

Three in-process runs of tests/configs/toy_resume.py (a wider toy model): uninterrupted (A),
uninterrupted again (B: the run-to-run noise floor), and SIGUSR1 during step ``at`` then
``--resume`` (C). Prints, per step, the largest relative loss difference of B and of C against
A, and whether the trainable weights are bit-identical. Not collected by pytest (no GPU in CI).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config  # noqa: E402

from projects.sa2va_vessel.engine.runner import train  # noqa: E402
from tests.toy_resume import read_losses  # noqa: E402
from tests.toy_runs import in_process_cfg, run_length  # noqa: E402

CONFIG = Path(__file__).resolve().parent / 'configs' / 'toy_resume.py'


def cfg_for(work: Path, args: argparse.Namespace, **options) -> Config:
    return in_process_cfg(
        CONFIG,
        work,
        {
            'model.hidden': 256,
            'model.vocab': 512,
            'model.lora_rank': 16,
            'train_dataloader.dataset.size': 64,
            'train_dataloader.dataset.num_samples': 64,
            **run_length(args.steps),
            'mixed_precision': args.precision,
            'randomness': dict(seed=42, deterministic=args.deterministic),
            **options,
        },
    )


def rel(a: str, b: str) -> float:
    x, y = float.fromhex(a), float.fromhex(b)
    return abs(x - y) / max(abs(x), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--precision', default='bf16', choices=['bf16', 'none'])
    parser.add_argument('--deterministic', action='store_true')
    parser.add_argument('--at', type=int, default=5)
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--root', default='work_dirs/resume_check')
    args = parser.parse_args()
    args.precision = None if args.precision == 'none' else args.precision
    root = Path(args.root) / uuid.uuid4().hex[:6]
    a, b, c = root / 'A', root / 'B', root / 'C'
    train(cfg_for(a, args))
    train(cfg_for(b, args))
    hooks = [dict(type='LossTraceHook'), dict(type='SignalAtIterHook', at=args.at)]
    assert train(cfg_for(c, args, custom_hooks=hooks)).preempted
    train(cfg_for(c, args, resume=True))
    ra, rb, rc = read_losses(a), read_losses(b), read_losses(c)
    assert [r['iter'] for r in rc] == list(range(args.steps))
    rows = []
    for x, y, z in zip(ra, rb, rc):
        rows.append(
            dict(
                iter=x['iter'],
                noise=max(rel(x['losses'][k], y['losses'][k]) for k in x['losses']),
                resumed=max(rel(x['losses'][k], z['losses'][k]) for k in x['losses']),
                weights_equal_B=x['weights'] == y['weights'],
                weights_equal_C=x['weights'] == z['weights'],
            )
        )
    after = rows[args.at + 1 :]
    summary = dict(
        precision=args.precision,
        deterministic=args.deterministic,
        at=args.at,
        steps=args.steps,
        max_rel_noise_A_vs_B=max(r['noise'] for r in rows),
        max_rel_resumed_A_vs_C_after_resume=max(r['resumed'] for r in after),
        bit_exact_steps_after_resume=sum(r['resumed'] == 0.0 for r in after),
        steps_after_resume=len(after),
        weights_bit_equal_after_resume=sum(r['weights_equal_C'] for r in after),
    )
    print(json.dumps(rows, indent=None))
    print('SUMMARY ' + json.dumps(summary))


if __name__ == '__main__':
    main()

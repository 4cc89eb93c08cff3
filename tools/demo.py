#!/usr/bin/env python
"""The demo: a tiny Sa2VA learns to segment synthetic vessels on the CPU, and proves it.

Writes a tiny random checkpoint and a synthetic vessel set under demo_work/ (when absent),
trains configs/vessel_lora_tiny.py, and prints the validation Dice before and after training.
Exits non-zero when the Dice did not rise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from projects.sa2va_vessel.engine.schedule import run_length_options  # noqa: E402

TINY_SCHEDULE = dict(warmup_ratio=0.03, warmup_start_factor=1e-3)  # configs/vessel_lora_tiny.py's


def run(cmd: list[str], env: dict[str, str]) -> None:
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, env=env, check=True)


def val_dice_history(work_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every validation in the run's scalars.json (the last run in work_dir)."""
    runs = sorted(p for p in work_dir.iterdir() if (p / 'vis_data' / 'scalars.json').is_file())
    if not runs:
        raise SystemExit(f'{work_dir}: no vis_data/scalars.json; did the training run?')
    history = []
    for line in (runs[-1] / 'vis_data' / 'scalars.json').read_text().splitlines():
        record = json.loads(line)
        if key in record:
            history.append((int(record['step']), float(record[key])))
    return history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='demo_work', help='where the checkpoint, data and run go')
    parser.add_argument('--iters', type=int, default=300)
    parser.add_argument('--samples', type=int, default=16)
    args = parser.parse_args()

    out = (REPO / args.out).resolve()
    checkpoint, data, work_dir = out / 'tiny_sa2va', out / 'synthetic', out / 'run'
    env = dict(
        os.environ,
        SA2VA_MODEL_PATH=str(checkpoint),
        VESSEL_DATA_ROOT=str(data),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get('PYTHONPATH')) if p),
    )
    py = sys.executable
    if not (checkpoint / 'config.json').is_file():
        run([py, 'tools/make_tiny_sa2va.py', str(checkpoint), '--seed', '0'], env)
    if not (data / 'splits' / 'val.txt').is_file():
        run(
            [
                py,
                'tools/make_synthetic_vessels.py',
                str(data),
                '--n',
                str(args.samples),
                '--seed',
                '0',
                '--size',
                '256',
            ],
            env,
        )
    started = time.time()
    run(
        [
            py,
            'tools/train.py',
            'configs/vessel_lora_tiny.py',
            '--work-dir',
            str(work_dir),
            '--cfg-options',
            *run_length_options(args.iters, **TINY_SCHEDULE),
            f'train_cfg.val_interval={args.iters}',
        ],
        env,
    )
    wall = time.time() - started

    history = val_dice_history(work_dir, 'vessel/global_dice')
    if len(history) < 2:
        raise SystemExit(f'expected validations before and after training, found {history}')
    (_, before), (_, after) = history[0], history[-1]
    print('\n=== sa2va-vessel demo ===')
    print(f'validation Dice before training: {before:.4f}')
    print(f'validation Dice after  training: {after:.4f}  ({args.iters} iterations, {wall:.0f} s)')
    gen = val_dice_history(work_dir, 'vessel/gen_global_dice')
    missing = val_dice_history(work_dir, 'vessel/gen_missing_seg_rate')
    if gen and missing:  # generation mode: the model writes [SEG] itself (VesselGenSegMetric)
        print(
            f'generation mode after training: Dice {gen[-1][1]:.4f}, missing [SEG] in '
            f'{100 * missing[-1][1]:.0f}% of the images (before: {100 * missing[0][1]:.0f}%)'
        )
    print(f'TensorBoard: tensorboard --logdir {work_dir}')
    if not after > before:
        raise SystemExit('the validation Dice did not rise: the model did not learn')


if __name__ == '__main__':
    main()

"""Helpers for the runner tests: the toy config, in-process runs, and reading their outputs."""

from __future__ import annotations

import glob
import json
import os
import uuid
from pathlib import Path
from typing import Any, Optional

from mmengine.config import Config

from tests.conftest import REPO_ROOT, python_cmd, run_cmd

TOY_CONFIG = REPO_ROOT / 'tests' / 'configs' / 'toy.py'
TOY_TRAINABLE = {
    'lora_A.weight',
    'lora_B.weight',
    'text_hidden_fcs.0.weight',
    'text_hidden_fcs.0.bias',
    'text_hidden_fcs.2.weight',
    'text_hidden_fcs.2.bias',
    'mask_decoder.weight',
    'mask_decoder.bias',
}

# The warm-up + cosine recipes of the configs' param_scheduler (warmup_cosine_schedule's arguments).
# A config's schedule must end at its max_iters, so a run of another length writes its own.
TOY_SCHEDULE = dict(warmup_ratio=0.34, warmup_start_factor=0.1)  # tests/configs/toy*.py
TINY_SCHEDULE = dict(warmup_ratio=0.03, warmup_start_factor=1e-3)  # vessel_lora_tiny.py, tiny_real.py
OFFICIAL_SCHEDULE = dict(warmup_ratio=0.05, warmup_start_factor=1e-5)  # vessel_lora_official.py


def run_length(max_iters: int, schedule: dict = TOY_SCHEDULE) -> dict[str, Any]:
    """Config options for a run of ``max_iters`` iterations with ``schedule``'s warm-up + cosine
    (no schedule, a constant lr, below 3 iterations)."""
    from projects.sa2va_vessel.engine.schedule import warmup_cosine_schedule

    return {'train_cfg.max_iters': max_iters, 'param_scheduler': warmup_cosine_schedule(max_iters, **schedule) or None}


def run_length_args(max_iters: int, schedule: dict = TOY_SCHEDULE) -> list[str]:
    """:func:`run_length` as ``--cfg-options`` arguments."""
    from projects.sa2va_vessel.engine.schedule import run_length_options

    return run_length_options(max_iters, **schedule)


def in_process_cfg(config: str | Path, work_dir: Path, options: Optional[dict[str, Any]] = None) -> Config:
    """``config`` for an in-process run in ``work_dir`` (unique experiment name, so mmengine's
    global logger/visualizer instances of earlier runs are not reused)."""
    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(options or {})
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{Path(config).stem}_{uuid.uuid4().hex[:8]}'
    cfg.launcher = 'none'
    return cfg


def toy_cfg(work_dir: Path, options: Optional[dict[str, Any]] = None) -> Config:
    """The toy config for an in-process run in ``work_dir``."""
    return in_process_cfg(TOY_CONFIG, work_dir, options)


def train_toy_under_zero2(work_dir: Path, *options: str) -> Any:
    """``tools/train.py tests/configs/toy.py --deepspeed deepspeed_zero2`` in one process (gloo),
    expected to fail; returns the finished process."""
    cmd = python_cmd(
        'tools/train.py',
        'tests/configs/toy.py',
        '--work-dir',
        str(work_dir),
        '--deepspeed',
        'deepspeed_zero2',
        '--cfg-options',
        *options,
    )
    return run_cmd(cmd, timeout=300, check=False)


def read_trace(work_dir: Path, rank: int = 0) -> list[dict]:
    """Records written by ``tests.toy_hooks.RankTraceHook``."""
    path = Path(work_dir) / f'trace_rank{rank}.jsonl'
    return [json.loads(line) for line in path.read_text().splitlines()]


def tensorboard_scalars(work_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of the run's TensorBoard event file(s): tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = glob.glob(os.path.join(str(work_dir), '*', 'vis_data', 'events.out.tfevents.*'))
    if not files:
        raise AssertionError(f'no TensorBoard event file under {work_dir}')
    series: dict[str, list[tuple[int, float]]] = {}
    for path in files:
        acc = EventAccumulator(path)
        acc.Reload()
        for tag in acc.Tags()['scalars']:
            series.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return series

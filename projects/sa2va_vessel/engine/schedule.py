"""The learning-rate schedule of the configs: linear warm-up, then cosine decay to the end.

The ``_base_`` schedule writes :func:`warmup_cosine_schedule`'s list out as ``param_scheduler``; a
config or a run of another length writes its own (the runner refuses a schedule that does not end
at ``train_cfg.max_iters``). Plain Python, so the tools import it without torch.
"""

from __future__ import annotations

from typing import Any


def warmup_cosine_schedule(
    max_iters: int, warmup_ratio: float = 0.03, warmup_start_factor: float = 1e-3, eta_min_ratio: float = 0.0
) -> list[dict]:
    """mmengine param schedulers: linear warm-up, then cosine decay to ``eta_min_ratio * lr``."""
    if not 0 < warmup_start_factor <= 1:
        raise ValueError(
            'warmup_start_factor must be in (0, 1]: a factor of 0 makes the first '
            'step a no-op and the gradient guard would stop the run'
        )
    if max_iters < 3:
        return []  # too short to warm up and decay; constant lr
    # mmengine's LinearLR reaches the full lr at step end-1, so a warm-up of one step would
    # never leave start_factor: use at least two.
    warmup = max(2, min(int(round(max_iters * warmup_ratio)), max_iters - 1))
    return [
        dict(type='LinearLR', start_factor=warmup_start_factor, by_epoch=False, begin=0, end=warmup),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup, end=max_iters, eta_min_ratio=eta_min_ratio),
    ]


def run_length_options(max_iters: int, **schedule: float) -> list[str]:
    """``--cfg-options`` for a run of ``max_iters`` iterations of a config whose ``param_scheduler``
    is a warm-up + cosine of the same ``schedule`` (:func:`warmup_cosine_schedule`'s arguments):
    the two schedulers' bounds, or no schedule below 3 iterations."""
    return schedule_options(max_iters, warmup_cosine_schedule(max_iters, **schedule))


def schedule_options(max_iters: int, schedulers: list[dict]) -> list[str]:
    """``--cfg-options`` that set ``max_iters`` and the iteration bounds of ``schedulers`` (in the
    config's order), or ``param_scheduler=None`` for an empty list."""
    if not schedulers:
        return [f'train_cfg.max_iters={max_iters}', 'param_scheduler=None']
    return [f'train_cfg.max_iters={max_iters}'] + [
        f'param_scheduler.{i}.{key}={entry[key]}'
        for i, entry in enumerate(schedulers)
        for key in ('begin', 'end')
        if entry.get(key) is not None
    ]


def _by_iteration(entry: Any) -> bool:
    return hasattr(entry, 'get') and entry.get('by_epoch', True) is False


def iteration_schedule_ends(schedule: Any) -> list[int]:
    """The ``end`` of every iteration-based (``by_epoch=False``) scheduler of ``schedule`` (one
    scheduler or a list): what must meet ``train_cfg.max_iters``."""
    entries = schedule if isinstance(schedule, (list, tuple)) else [schedule]
    return [int(e['end']) for e in entries if _by_iteration(e) and e.get('end') is not None]


def stretch_schedule(schedule: list[dict], max_iters: int) -> list[dict]:
    """``schedule`` with the bounds of its iteration-based schedulers scaled to end at
    ``max_iters``: the same shape (warm-up share, decay) for a run of another length; below 3
    iterations, no schedule (constant lr), as :func:`warmup_cosine_schedule` gives."""
    if max_iters < 3:
        return []
    ends = iteration_schedule_ends(schedule)
    if not ends:
        raise ValueError(f'param_scheduler {schedule} has no iteration-based "end": it cannot be stretched')
    old_end = max(ends)
    stretched = []
    for entry in schedule:
        entry = dict(entry)
        for key in ('begin', 'end'):
            if _by_iteration(entry) and entry.get(key) is not None:
                entry[key] = round(int(entry[key]) * max_iters / old_end)
        stretched.append(entry)
    # mmengine's LinearLR reaches the full lr one step before its end: keep two steps of warm-up
    for entry, following in zip(stretched, stretched[1:]):
        if entry.get('type') == 'LinearLR' and _by_iteration(entry) and entry.get('end') is not None:
            if entry['end'] - entry.get('begin', 0) < 2:
                entry['end'] = entry.get('begin', 0) + 2
                if following.get('begin') is not None:
                    following['begin'] = entry['end']
    return stretched

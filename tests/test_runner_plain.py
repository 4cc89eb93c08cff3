"""The plain mmengine Runner (--deepspeed none) on CPU: trains, saves trainable weights only,
resumes exactly where it stopped."""

from __future__ import annotations

import torch
from mmengine.runner import FlexibleRunner, Runner

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.runner import warmup_cosine_schedule
from tests.toy_runs import TOY_TRAINABLE, read_trace, run_length, toy_cfg


def test_trains_saves_trainable_only_and_resumes_exactly(tmp_path):
    first = tmp_path / 'first'
    runner = train(toy_cfg(first))
    assert isinstance(runner, Runner) and not isinstance(runner, FlexibleRunner)
    trace = read_trace(first)
    assert [r['iter'] for r in trace] == list(range(6))
    assert len({r['weights'] for r in trace}) == 6, 'weights must change every step'

    for name in ('iter_3.pth', 'iter_6.pth'):
        ckpt = torch.load(first / name, map_location='cpu', weights_only=False)
        assert set(ckpt['state_dict']) == TOY_TRAINABLE
        assert ckpt['meta']['trainable_only'] is True
        assert 'optimizer' in ckpt and 'param_schedulers' in ckpt

    # Resume from iteration 3 into a fresh work dir: iterations 4..6 must repeat exactly.
    second = tmp_path / 'second'
    train(toy_cfg(second, dict(resume=True, load_from=str(first / 'iter_3.pth'))))
    resumed = read_trace(second)
    assert [r['iter'] for r in resumed] == [3, 4, 5]
    assert [r['indices'] for r in resumed] == [r['indices'] for r in trace[3:]]
    assert [r['weights'] for r in resumed] == [r['weights'] for r in trace[3:]]


def test_auto_resume_from_work_dir(tmp_path):
    train(toy_cfg(tmp_path, run_length(4)))
    train(toy_cfg(tmp_path, {**run_length(4), 'resume': True}))
    # The second run found iter_4.pth and had nothing left to do.
    assert [r['iter'] for r in read_trace(tmp_path)] == [0, 1, 2, 3]


def test_warmup_cosine_schedule_shape():
    sched = warmup_cosine_schedule(1000, warmup_ratio=0.03, warmup_start_factor=1e-3)
    assert sched[0]['type'] == 'LinearLR' and sched[0]['end'] == 30
    assert sched[1]['type'] == 'CosineAnnealingLR'
    assert (sched[1]['begin'], sched[1]['end']) == (30, 1000)

"""DeferredRuntimeInfoHook: the message hub gets mmengine's values, read once per log interval."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from mmengine.logging import MessageHub

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.runtime_info import DeferredRuntimeInfoHook
from tests.toy_runs import run_length, toy_cfg


def _runner(max_iters: int) -> SimpleNamespace:
    return SimpleNamespace(message_hub=MessageHub(f'hub{id(object())}'), iter=0, max_iters=max_iters, hooks=[])


def _history(hub: MessageHub, key: str) -> list[float]:
    return [float(v) for v in hub.get_scalar(key).data[0]] if key in hub.log_scalars else []


def test_losses_arrive_in_order_at_the_log_interval_only():
    hook = DeferredRuntimeInfoHook(interval=3)
    runner = _runner(max_iters=7)
    losses = [torch.tensor(0.5 + i, dtype=torch.bfloat16) for i in range(7)]
    for i, loss in enumerate(losses):
        runner.iter = i
        hook.after_train_iter(runner, i, outputs={'loss': loss, 'lr_like': float(i)})
        done = i + 1
        # nothing is read before a flush point (3, 6, and the last iteration 7)
        expected = done if done % 3 == 0 or done == 7 else done - done % 3
        assert len(_history(runner.message_hub, 'train/loss')) == expected, done
    assert _history(runner.message_hub, 'train/loss') == [float(v) for v in losses]
    assert _history(runner.message_hub, 'train/lr_like') == [float(i) for i in range(7)]


def test_a_checkpoint_gets_the_pending_values():
    hook = DeferredRuntimeInfoHook(interval=10)
    runner = _runner(max_iters=100)
    runner.iter = 0
    hook.after_train_iter(runner, 0, outputs={'loss': torch.tensor(2.5)})
    stale = runner.message_hub.state_dict()  # the hub before the hook
    hook.before_checkpoint_write(runner)  # the runner calls it, then takes the hub for the checkpoint
    checkpoint = {'meta': {}, 'message_hub': runner.message_hub.state_dict()}
    assert 'train/loss' not in stale['log_scalars']
    assert list(checkpoint['message_hub']['log_scalars']['train/loss'].data[0]) == [2.5]


def test_a_run_logs_what_mmengines_hook_logs(tmp_path):
    """Same toy run with mmengine's RuntimeInfoHook and with the deferred one: equal histories."""
    opts = {**run_length(5), 'default_hooks.logger.interval': 2, 'default_hooks.gradient_guard.interval': 2}
    ours = train(toy_cfg(tmp_path / 'deferred', opts))
    assert type(next(h for h in ours.hooks if 'RuntimeInfo' in type(h).__name__)) is DeferredRuntimeInfoHook
    theirs = train(toy_cfg(tmp_path / 'mmengine', {**opts, 'default_hooks.runtime_info.type': 'RuntimeInfoHook'}))
    keys = [k for k in theirs.message_hub.log_scalars if k.startswith('train/loss')]
    assert 'train/loss' in keys and len(_history(theirs.message_hub, 'train/loss')) == 5
    for key in keys:
        assert _history(ours.message_hub, key) == _history(theirs.message_hub, key), key
    # the guard measures (and logs) its own time on the first, the log-interval and the last iterations
    assert len(_history(ours.message_hub, 'train/guard_ms')) == 4  # iterations 1, 2, 4, 5

"""The gradient guard read one update late (lagged=True, fused AdamW): a bad step is skipped on the
device (``found_inf``), raised at the next check, and never applied or checkpointed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from projects.sa2va_vessel.engine import runner as runner_module
from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.hooks import GradientFlowGuardHook, stepping_optimizer
from tests.toy_model import TOY_GROUPS
from tests.toy_runs import read_trace, toy_cfg, train_toy_under_zero2

FUSED = {'optim_wrapper.optimizer.fused': True}
# The guard's log interval beyond the run: every update after the first is lagged.
LAGGED = {**FUSED, 'default_hooks.gradient_guard.lagged': True, 'default_hooks.gradient_guard.interval': 100}
SYNC = {**LAGGED, 'default_hooks.gradient_guard.lagged': False}


@pytest.fixture
def runs(monkeypatch):
    """Runs ``train`` and keeps each run's runner (also when it raises)."""
    built: list[Any] = []
    original = runner_module.build_runner

    def build(cfg):
        built.append(original(cfg))
        return built[-1]

    monkeypatch.setattr(runner_module, 'build_runner', build)
    return built


def _guard(runner) -> GradientFlowGuardHook:
    return next(h for h in runner.hooks if isinstance(h, GradientFlowGuardHook))


def _trained_state(runner) -> dict[str, torch.Tensor]:
    """The trainable weights and the AdamW state (moments, step counts) of a run."""
    model = runner.model
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    optimizer = runner.optim_wrapper.optimizer
    names = {id(p): n for n, p in model.named_parameters()}
    for param, st in optimizer.state.items():
        for key, value in st.items():
            state[f'{names[id(param)]}/{key}'] = value.detach().clone()
    return state


def _assert_equal(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for key in want:
        assert torch.equal(got[key], want[key]), f'{key} differs'


def _error(tmp_path, options) -> str:
    with pytest.raises(RuntimeError) as err:
        train(toy_cfg(tmp_path, options))
    return str(err.value)


@pytest.mark.parametrize(
    'plant, expected',
    [
        ('nan_grad_from_iter', 'non-finite gradient (inf/nan): lora'),
        ('zero_grad_from_iter', 'gradient exactly zero: lora'),
    ],
)
def test_bad_step_is_skipped_on_the_device_and_raised_one_update_late(tmp_path, runs, plant, expected):
    msg = _error(tmp_path / 'lagged', {**LAGGED, f'model.{plant}': 4})
    assert 'at iteration 4, after the backward, trainable groups got no usable gradient' in msg
    assert expected in msg
    assert 'the optimizer step of iteration 4 and any after it were skipped on the device' in msg
    assert 'the weights and checkpoints are as after iteration 3' in msg
    lagged = runs[-1]
    assert _guard(lagged).lagged_checks == 3  # iterations 2, 3 and 4
    assert not hasattr(stepping_optimizer(lagged.optim_wrapper), 'found_inf'), 'found_inf left on the optimizer'
    # iteration 4 ran to its end (step skipped), iteration 5 stopped at its check
    trace = read_trace(tmp_path / 'lagged')
    assert [r['iter'] for r in trace] == [0, 1, 2, 3] and trace[3]['weights'] == trace[2]['weights']

    # The synchronous guard stops before the step of iteration 4: the same weights and AdamW state.
    msg = _error(tmp_path / 'sync', {**SYNC, f'model.{plant}': 4})
    assert 'Stopped before the optimizer step: the weights and checkpoints are as after iteration 3' in msg
    reference = runs[-1]
    assert _guard(reference).lagged_checks == 0
    _assert_equal(_trained_state(lagged), _trained_state(reference))


def test_healthy_lagged_run_is_bit_identical_to_the_synchronous_one(tmp_path, runs):
    # interval 2: iterations 2, 4, 6 are logged (synchronous), 3 and 5 lagged
    options = {**FUSED, 'default_hooks.gradient_guard.interval': 2}
    sync = train(toy_cfg(tmp_path / 'sync', {**options, 'default_hooks.gradient_guard.lagged': False}))
    lagged = train(toy_cfg(tmp_path / 'lagged', {**options, 'default_hooks.gradient_guard.lagged': True}))
    assert _guard(sync).lagged_checks == 0 and _guard(lagged).lagged_checks == 2
    _assert_equal(_trained_state(lagged), _trained_state(sync))
    for group in TOY_GROUPS:
        key = f'train/grad_norm/{group}'
        got, want = (r.message_hub.get_scalar(key).data[0].tolist() for r in (lagged, sync))
        assert got == want and len(got) == 3
    assert not hasattr(lagged.optim_wrapper.optimizer, 'found_inf')


def test_no_checkpoint_after_a_bad_step(tmp_path):
    # The toy config saves after iteration 3: its step is bad, so the save must raise first.
    msg = _error(tmp_path, {**LAGGED, 'model.nan_grad_from_iter': 3})
    assert 'the optimizer step of iteration 3 and any after it were skipped on the device' in msg
    assert not any('iter_3' in p.name for p in tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
    assert [r['iter'] for r in read_trace(tmp_path)] == [0, 1]


def test_lagged_needs_an_optimizer_that_skips_on_the_device(tmp_path):
    with pytest.raises(ValueError, match=r'lagged=True\) needs .* fused=True'):
        train(toy_cfg(tmp_path, {'default_hooks.gradient_guard.lagged': True}))


def test_the_shipped_runtime_lags_the_check_where_it_is_safe():
    from mmengine.config import Config

    from projects.sa2va_vessel.engine.runner import REPO_ROOT

    for name in ('vessel_lora.py', 'vessel_lora_8b_24g.py'):
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / name))
        assert cfg.default_hooks.gradient_guard.lagged is None, name


@pytest.mark.parametrize('lagged', [False, None])  # the hook's default; the shipped runtime's auto
def test_lag_is_off_on_the_cpu(tmp_path, runs, lagged):
    train(
        toy_cfg(
            tmp_path,
            {**FUSED, 'default_hooks.gradient_guard.interval': 100, 'default_hooks.gradient_guard.lagged': lagged},
        )
    )
    assert _guard(runs[-1]).lagged_checks == 0


@pytest.mark.parametrize(
    'plant, iteration',
    [
        ('nan_grad_from_iter', 4),
        ('zero_grad_from_iter', 3),  # the toy config saves after iteration 3
    ],
)
def test_lagged_guard_under_deepspeed_zero2(tmp_path, plant, iteration):
    # One process, DeepSpeed ZeRO-2 on gloo: found_inf goes on the torch AdamW inside ZeRO's optimizer.
    options = [f'{k}={v}' for k, v in {**LAGGED, f'model.{plant}': iteration}.items()]
    out = train_toy_under_zero2(tmp_path, *options)
    assert out.returncode != 0
    assert f'the optimizer step of iteration {iteration} and any after it were skipped on the device' in out.stdout
    trace = read_trace(tmp_path)
    if iteration == 3:  # raised before the checkpoint of iteration 3 was written
        assert [r['iter'] for r in trace] == [0, 1]
        assert not any('iter_3' in p.name for p in tmp_path.iterdir()), sorted(p.name for p in tmp_path.iterdir())
    else:  # the skipped step left the weights as after iteration 3
        assert [r['iter'] for r in trace] == [0, 1, 2, 3] and trace[3]['weights'] == trace[2]['weights']
        assert trace[2]['weights'] != trace[1]['weights']

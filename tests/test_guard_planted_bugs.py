"""One planted bug per test: the gradient-flow guard (or the checkpoint save) stops the run with
an error that names the groups and the iteration (issue 12)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.resilience import NonFiniteWeights
from tests.conftest import REPO_ROOT
from tests.toy_runs import TINY_SCHEDULE, in_process_cfg, read_trace, run_length, toy_cfg

TINY_REAL = REPO_ROOT / 'tests' / 'configs' / 'tiny_real.py'


# -- the toy model (seconds) ------------------------------------------------------------------
def test_optimizer_step_skipped_after_iteration_1(tmp_path):
    with pytest.raises(RuntimeError) as err:
        train(toy_cfg(tmp_path, {'model.skip_step_after': 1}))
    msg = str(err.value)
    assert (
        'over iterations 2..2 (window of 1) these trainable groups did not change: lora, '
        'text_hidden_fcs, mask_decoder.' in msg
    )
    assert 'optimizer.step() was not called' in msg
    assert [r['iter'] for r in read_trace(tmp_path)] == [0], 'iteration 2 must not complete'


def test_window_defaults_to_the_log_interval(tmp_path):
    # Log interval 2 -> the skipped steps of iterations 2..4 are seen at iteration 4.
    with pytest.raises(RuntimeError, match=r'over iterations 3\.\.4 \(window of 2\)'):
        train(
            toy_cfg(
                tmp_path,
                {
                    'model.skip_step_after': 2,
                    'default_hooks.logger.interval': 2,
                    'default_hooks.gradient_guard.interval': None,
                },
            )
        )


def _pointer(work_dir: Path) -> str:
    return Path((work_dir / 'last_checkpoint').read_text().strip()).name


def test_nan_gradients_from_iteration_2_stop_before_the_step(tmp_path):
    with pytest.raises(RuntimeError) as err:
        train(toy_cfg(tmp_path, {'model.nan_grad_from_iter': 2, 'default_hooks.checkpoint.interval': 1}))
    msg = str(err.value)
    assert 'at iteration 2, after the backward, trainable groups got no usable gradient' in msg
    assert 'non-finite gradient (inf/nan): lora' in msg
    assert 'Stopped before the optimizer step' in msg
    saved = sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.pth' or 'partial' in p.name)
    assert saved == ['iter_1.pth'] and _pointer(tmp_path) == 'iter_1.pth'
    state = torch.load(tmp_path / 'iter_1.pth', map_location='cpu', weights_only=False)
    assert all(torch.isfinite(v).all() for v in state['state_dict'].values())


def test_nan_weights_are_never_saved_even_without_the_guard(tmp_path):
    # The guard off, NaN gradients become NaN weights at iteration 2: the save must refuse them.
    with pytest.raises(NonFiniteWeights) as err:
        train(
            toy_cfg(
                tmp_path,
                {
                    'model.nan_grad_from_iter': 2,
                    'default_hooks.gradient_guard': None,
                    'default_hooks.checkpoint.interval': 1,
                },
            )
        )
    assert 'Refusing to save iter_2.pth' in str(err.value)
    assert 'last_checkpoint still names' in str(err.value) and 'iter_1.pth' in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == '.pth' or 'partial' in p.name) == ['iter_1.pth']
    assert _pointer(tmp_path) == 'iter_1.pth'


def test_guard_time_per_step_is_logged(tmp_path):
    runner = train(toy_cfg(tmp_path, run_length(2)))
    ms = runner.message_hub.get_scalar('train/guard_ms').data[0]
    assert len(ms) == 2 and all(m > 0 for m in ms) and all(math.isfinite(m) for m in ms)
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'guard_ms:' in log and 'the mask losses reach every trainable unit' in log


# -- the real model on the tiny checkpoint ----------------------------------------------------
@pytest.fixture
def tiny_env(tiny_checkpoint, synthetic_vessels, monkeypatch):
    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    return monkeypatch


def _plant(monkeypatch, after_init) -> None:
    """Run ``after_init(model)`` at the end of ``Sa2VAVesselModel.__init__``."""
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    original = Sa2VAVesselModel.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        after_init(self)

    monkeypatch.setattr(Sa2VAVesselModel, '__init__', init)


def _real_error(tmp_path) -> str:
    cfg = in_process_cfg(TINY_REAL, tmp_path, {'deepspeed': 'none', **run_length(2, TINY_SCHEDULE)})
    with pytest.raises(RuntimeError) as err:
        train(cfg)
    return str(err.value)


def test_projector_switched_on_but_frozen(tiny_env, tmp_path):
    _plant(tiny_env, lambda m: m.sa2va.mlp1.requires_grad_(False))
    msg = _real_error(tmp_path)
    assert (
        'before iteration 1, these groups are switched on in the config (model.trainable) '
        'but have no trainable parameter: projector.' in msg
    )


def test_lora_adapters_disabled_through_peft(tiny_env, tmp_path):
    from peft.tuners.lora import LoraLayer

    def disable(model):
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.enable_adapters(False)  # peft's switch: also sets requires_grad False

    _plant(tiny_env, disable)
    msg = _real_error(tmp_path)
    assert 'have no trainable parameter: lora.' in msg


def test_seg_hidden_state_detached_before_text_hidden_fcs(tiny_env, tmp_path):
    # The LLM loss still reaches every LLM-side group; only the mask losses are cut off.
    _plant(
        tiny_env, lambda m: m.sa2va.text_hidden_fcs.register_forward_pre_hook(lambda module, args: (args[0].detach(),))
    )
    msg = _real_error(tmp_path)
    assert (
        'at iteration 1, the mask losses (loss_mask, loss_dice) alone give these trainable '
        'groups no gradient: lora, token_rows, projector.' in msg
    )
    assert not (tmp_path / 'trace_rank0.jsonl').exists(), 'no iteration may complete'


def test_lora_bypassed_on_the_mlp_projections_only(tiny_env, tmp_path):
    from peft.tuners.lora import LoraLayer

    def bypass(model):
        for name, module in model.named_modules():
            if isinstance(module, LoraLayer) and '.mlp.' in name:
                module.forward = module.base_layer.forward  # the adapter is skipped

    _plant(tiny_env, bypass)
    msg = _real_error(tmp_path)
    assert 'no autograd path to these trainable groups: lora.gate_proj, lora.up_proj, lora.down_proj. They' in msg
    assert 'groups that are connected: lora.q_proj, lora.k_proj, lora.v_proj, lora.o_proj, token_rows' in msg

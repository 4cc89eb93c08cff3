"""GradientFlowGuardHook stops runs that would train nothing, and names what is dead."""

from __future__ import annotations

import re

import pytest

from projects.sa2va_vessel.engine import train
from tests.toy_model import TOY_GROUPS
from tests.toy_runs import read_trace, run_length, tensorboard_scalars, toy_cfg, train_toy_under_zero2

ALL = ', '.join(TOY_GROUPS)


def _train_error(tmp_path, options) -> str:
    with pytest.raises(RuntimeError) as err:
        train(toy_cfg(tmp_path, options))
    return str(err.value)


def test_healthy_run_passes_and_logs_the_table(tmp_path):
    train(toy_cfg(tmp_path, run_length(3)))
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Parameter table:' in log and 'vision_tower      frozen' in log
    assert 'every trainable group got a gradient' in log
    assert 'every trainable group changed after the first optimizer step' in log


def test_forward_under_no_grad_with_detach_hack_is_stopped(tmp_path):
    # Loss rebuilt with .detach().requires_grad_(True): backward runs, nothing learns.
    msg = _train_error(tmp_path, {'model.forward_under_no_grad': True})
    assert f'no autograd path to these trainable groups: {ALL}.' in msg
    assert 'groups that are connected: none' in msg
    assert 'torch.no_grad()' in msg and '.detach().requires_grad_(True)' in msg
    assert not (tmp_path / 'trace_rank0.jsonl').exists(), 'no iteration may complete'


@pytest.mark.parametrize(
    'group, dead',
    [
        ('lora', ['lora']),
        ('text_hidden_fcs', ['text_hidden_fcs']),
        # Detaching the decoder's output also cuts text_hidden_fcs, which only feeds the decoder.
        ('mask_decoder', ['text_hidden_fcs', 'mask_decoder']),
    ],
)
def test_cut_groups_are_named(tmp_path, group, dead):
    msg = _train_error(tmp_path, {'model.cut_group': group})
    named = re.search(r'no autograd path to these trainable groups: (.*)\. They', msg).group(1)
    assert named.split(', ') == dead
    connected = [g for g in TOY_GROUPS if g not in dead]
    assert f'groups that are connected: {", ".join(connected)}' in msg


def test_zero_gradient_is_stopped(tmp_path):
    # Connected to the loss (the graph check passes), but the gradient is exactly zero. The
    # mask-loss check sees it first; without it, the gradient check after backward does.
    msg = _train_error(tmp_path, {'model.zero_group': 'text_hidden_fcs'})
    assert (
        'the mask losses (loss_mask, loss_dice) alone give these trainable groups no '
        'gradient: lora, text_hidden_fcs.' in msg
    )  # the zeroed prompt cuts LoRA's mask path too
    msg = _train_error(
        tmp_path, {'model.zero_group': 'text_hidden_fcs', 'default_hooks.gradient_guard.mask_losses': ()}
    )
    assert 'after the first backward' in msg
    assert 'gradient exactly zero: text_hidden_fcs\n' in msg
    assert re.search(r'groups that did get a gradient: lora \(.*\), mask_decoder \(', msg)


def test_weights_that_do_not_move_are_stopped(tmp_path):
    # Gradients flow, but lr=0: the step check is the one that must fire.
    msg = _train_error(tmp_path, {'optim_wrapper.optimizer.lr': 0.0, 'param_scheduler': None})
    assert f'did not change: {ALL}.' in msg
    assert 'learning rates at this step: [0.0]' in msg


def test_guard_can_be_switched_off(tmp_path):
    train(toy_cfg(tmp_path, {'model.cut_group': 'lora', **run_length(2), 'default_hooks.gradient_guard': None}))
    assert len(read_trace(tmp_path)) == 2


def test_grad_norms_reach_tensorboard(tmp_path):
    train(toy_cfg(tmp_path))
    scalars = tensorboard_scalars(tmp_path)
    for tag in ('loss', 'loss_llm', 'loss_mask', 'loss_dice', 'lr', *(f'grad_norm/{g}' for g in TOY_GROUPS)):
        assert tag in scalars, f'{tag} missing; have {sorted(scalars)}'
        assert [step for step, _ in scalars[tag]] == [1, 2, 3, 4, 5, 6]
    assert all(v > 0 for _, v in scalars['grad_norm/lora'])
    lrs = [v for _, v in scalars['lr']]
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-2)  # warm-up
    assert lrs[-1] < lrs[1]  # cosine


def test_grad_norms_every_n_iters(tmp_path):
    train(toy_cfg(tmp_path, {'default_hooks.logger.interval': 2, 'default_hooks.gradient_guard.interval': 2}))
    scalars = tensorboard_scalars(tmp_path)
    assert [s for s, _ in scalars['grad_norm/mask_decoder']] == [2, 4, 6]


@pytest.mark.parametrize(
    'options, expected',
    [
        ('model.cut_group=text_hidden_fcs', 'no autograd path to these trainable groups: text_hidden_fcs.'),
        # the mask-loss check walks the graph under DeepSpeed, so the gradient check catches this
        ('model.zero_group=lora', 'gradient exactly zero: lora'),
        ('model.nan_grad_from_iter=2', 'at iteration 2, after the backward, trainable groups got no usable gradient'),
    ],
)
def test_guard_under_deepspeed_zero2(tmp_path, options, expected):
    # One process, DeepSpeed ZeRO-2 on gloo: the full gradient comes from safe_get_full_grad.
    out = train_toy_under_zero2(tmp_path, options)
    assert out.returncode != 0
    assert 'RuntimeError: GradientFlowGuardHook' in out.stdout
    assert expected in out.stdout

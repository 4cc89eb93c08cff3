"""bf16 trainables with fp32 masters (engine/master_weights.py): AdamW on the masters is fp32 AdamW
exactly, updates below bf16's resolution still land, checkpoints and resume keep the fp32 values,
and the gradient guard compares the masters."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.master_weights import MasterWeightOptimWrapper, frozen_float_dtype
from projects.sa2va_vessel.engine.runner import ConfigError, build_runner, check_config
from tests.toy_runs import TOY_TRAINABLE, read_trace, toy_cfg

BF16 = torch.bfloat16


class FrozenBf16Base(nn.Module):
    """A bf16 frozen layer under fp32 trainables, as the real model is built for bf16."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.base = nn.Linear(8, 8).to(BF16).requires_grad_(False)
        self.adapter = nn.Linear(8, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.adapter(self.base(x.to(BF16)))).float().pow(2).mean()


def _wrapper(model: nn.Module, lr: float = 1e-2, clip: float | None = 1.0, **adamw) -> MasterWeightOptimWrapper:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, fused=True, **adamw)
    return MasterWeightOptimWrapper(optimizer, clip_grad=dict(max_norm=clip) if clip else None)


def test_the_frozen_base_sets_the_compute_dtype() -> None:
    assert frozen_float_dtype(FrozenBf16Base()) == BF16
    assert frozen_float_dtype(nn.Linear(2, 2)) is None  # nothing frozen


def test_adamw_on_the_masters_is_fp32_adamw_on_the_same_gradients_exactly() -> None:
    model = FrozenBf16Base()
    reference = [p.detach().clone().requires_grad_(True) for p in model.parameters() if p.requires_grad]
    ref_opt = torch.optim.AdamW(reference, lr=1e-2, fused=True, weight_decay=0.05)
    wrapper = _wrapper(model, weight_decay=0.05)
    assert wrapper.attach_masters(BF16) == 4
    weights = [p for p in model.parameters() if p.requires_grad]
    assert all(w.dtype == BF16 for w in weights), 'the forward must see bf16 trainables'
    torch.manual_seed(1)
    for _ in range(5):
        loss = model(torch.randn(4, 8))
        loss.backward()
        for r, w in zip(reference, weights):
            r.grad = w.grad.float()  # the gradients are bf16: the masters see exactly these
        torch.nn.utils.clip_grad_norm_(reference, 1.0)
        ref_opt.step()
        ref_opt.zero_grad()
        wrapper.step()
        wrapper.zero_grad()
        assert all(w.grad is None for w in weights)
    for r, w in zip(reference, weights):
        master = wrapper.master_of(w)
        assert master.dtype == torch.float32 and torch.equal(master, r)
        assert torch.equal(w, r.to(BF16)), 'the bf16 weights are the masters rounded'


def test_updates_below_bf16_resolution_land_in_the_masters_and_are_lost_without_them() -> None:
    """AdamW moves each weight by about lr per step: 1e-4 against bf16's spacing 2**-7 at 1.0."""

    def run(masters: bool) -> tuple[torch.Tensor, torch.Tensor]:
        model = FrozenBf16Base()
        with torch.no_grad():
            model.adapter.weight.fill_(1.0)
        if masters:
            wrapper = _wrapper(model, lr=1e-4, clip=None, weight_decay=0.0)
            wrapper.attach_masters(BF16)
        else:  # what a bf16 model without masters does
            model.to(BF16)
            wrapper = MasterWeightOptimWrapper(
                torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.0)
            )
        start = model.adapter.weight.detach().clone()
        x = torch.ones(4, 8)
        for _ in range(60):
            model(x).backward()
            wrapper.step()
            wrapper.zero_grad()
        return start, model.adapter.weight.detach()

    start, end = run(masters=True)
    assert not torch.equal(start, end), 'the masters accumulated 60 small updates into a bf16 step'
    start, end = run(masters=False)
    assert torch.equal(start, end), 'bf16 weights alone round every one of these updates away'


def test_state_moves_to_the_masters_and_back() -> None:
    model = FrozenBf16Base()
    wrapper = _wrapper(model)
    with torch.autocast('cpu', dtype=BF16):  # fp32 trainables over the bf16 base, as built
        loss = model(torch.randn(2, 8))
    loss.backward()
    wrapper.step()  # fp32, before attaching: the state a resume loads
    wrapper.zero_grad()
    before = copy.deepcopy(wrapper.optimizer.state_dict())
    wrapper.attach_masters(BF16)
    masters = wrapper.optimizer.param_groups[0]['params']
    assert all(m in wrapper.optimizer.state for m in masters)
    assert torch.equal(wrapper.optimizer.state[masters[0]]['exp_avg'], before['state'][0]['exp_avg'])

    state_dict = {k: v.clone() for k, v in model.state_dict().items()}
    assert state_dict['adapter.weight'].dtype == BF16
    assert wrapper.masters_into_state_dict(model, state_dict) == 4
    assert state_dict['adapter.weight'].dtype == torch.float32
    assert torch.equal(state_dict['adapter.weight'], wrapper.master_of(model.adapter.weight))
    assert state_dict['base.weight'].dtype == BF16, 'frozen entries stay as they are'

    masters_now = [m.detach().clone() for m in masters]
    wrapper.detach_masters()
    weights = [p for p in model.parameters() if p.requires_grad]
    assert all(w.dtype == torch.float32 for w in weights)
    assert all(torch.equal(w, m) for w, m in zip(weights, masters_now))
    assert all(w in wrapper.optimizer.state for w in weights)


# -- through the runner (tools/train.py's engine.train), on the CPU with the toy model ----------
MASTERS = {
    'model.base_dtype': 'bfloat16',
    'mixed_precision': 'bf16',
    'master_weights': True,
    'optim_wrapper.type': 'MasterWeightOptimWrapper',
}


def test_the_config_names_the_wrapper_that_goes_with_master_weights(tmp_path) -> None:
    cfg = toy_cfg(tmp_path, {**MASTERS, 'optim_wrapper.type': 'SyncFreeOptimWrapper'})
    with pytest.raises(ConfigError, match="optim_wrapper.type='MasterWeightOptimWrapper'"):
        check_config(cfg, on_gpu=True)
    cfg = toy_cfg(tmp_path, MASTERS)
    cfg.launcher = 'pytorch'
    with (
        pytest.MonkeyPatch.context() as env,
        pytest.raises(ConfigError, match='master_weights=True trains one process'),
    ):
        env.setenv('WORLD_SIZE', '2')
        build_runner(cfg)


def test_a_run_trains_bf16_weights_saves_fp32_masters_and_resumes_exactly(tmp_path) -> None:
    first = tmp_path / 'first'
    runner = train(toy_cfg(first, MASTERS))
    assert type(runner.optim_wrapper).__name__ == 'MasterWeightOptimWrapper'
    trace = read_trace(first)
    assert len({r['weights'] for r in trace}) == 6, 'weights must change every step'
    final = {n: p.detach() for n, p in runner.model.named_parameters() if p.requires_grad}
    assert all(p.dtype == torch.float32 for p in final.values()), 'after training: the fp32 masters'
    ckpt = torch.load(first / 'iter_6.pth', map_location='cpu', weights_only=False)
    assert set(ckpt['state_dict']) == TOY_TRAINABLE
    for name in TOY_TRAINABLE:
        value = ckpt['state_dict'][name]
        assert value.dtype == torch.float32 and torch.equal(value, final[name]), name
    assert any(not torch.equal(v, v.to(BF16).float()) for v in ckpt['state_dict'].values()), (
        'the checkpoint holds the fp32 masters, not their bf16 copies'
    )

    second = tmp_path / 'second'
    train(toy_cfg(second, {**MASTERS, 'resume': True, 'load_from': str(first / 'iter_3.pth')}))
    resumed = read_trace(second)
    assert [r['iter'] for r in resumed] == [3, 4, 5]
    assert [r['weights'] for r in resumed] == [r['weights'] for r in trace[3:]]


def test_the_guard_compares_the_masters_which_small_updates_move(tmp_path) -> None:
    """At lr 1e-5 no bf16 weight moves in a step; the guard checks the masters, which do. With the
    probe reading the bf16 weights instead, the same run stops as "did not move"."""
    from projects.sa2va_vessel.engine import guard_probe

    small = {**MASTERS, 'optim_wrapper.optimizer.lr': 1e-5, 'train_cfg.max_iters': 2, 'param_scheduler': None}
    train(toy_cfg(tmp_path / 'masters', small))

    original = guard_probe.ParamProbe.__init__

    def without_masters(self, units, engine=None, master_of=None):
        original(self, units, engine, None)

    guard_probe.ParamProbe.__init__ = without_masters
    try:
        with pytest.raises(RuntimeError, match='(?i)did not change|unchanged|not move'):
            train(toy_cfg(tmp_path / 'weights', small))
    finally:
        guard_probe.ParamProbe.__init__ = original

"""SyncFreeOptimWrapper (engine/optim_wrapper.py): mmengine's OptimWrapper step, with the clipping
norm read one update later instead of at once (on a GPU that read waits for the whole backward)."""

from __future__ import annotations

import torch
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from projects.sa2va_vessel.engine.optim_wrapper import SyncFreeOptimWrapper

MAX_NORM = 0.05  # below the toy gradients' norm: every step clips


def _model_and_batches(seed: int = 0) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    return model, [torch.randn(4, 6) for _ in range(4)]


def _train(wrapper_cls: type, message_hub_name: str) -> tuple[list[torch.Tensor], list[float], list]:
    """Four clipped AdamW updates; returns the weights, torch's clip norms and the logged norms."""
    MessageHub.get_instance(message_hub_name)  # the wrapper logs into the current instance
    model, batches = _model_and_batches()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    wrapper = wrapper_cls(opt, clip_grad=dict(max_norm=MAX_NORM))
    torch_norms, logged = [], []
    for x in batches:
        loss = model(x).pow(2).mean()
        wrapper.backward(loss)
        grads = [p.grad.detach().clone() for p in model.parameters()]
        torch_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        wrapper.step()
        wrapper.zero_grad()
        history = wrapper.message_hub.log_scalars.get('train/grad_norm')
        logged.append(None if history is None else list(history.data[0]))
    return [p.detach().clone() for p in model.parameters()], torch_norms, logged


def test_weights_are_mmengines_bit_for_bit() -> None:
    ours, _, _ = _train(SyncFreeOptimWrapper, 'sync_free_weights')
    theirs, _, _ = _train(OptimWrapper, 'mmengine_weights')
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    fresh, _ = _model_and_batches()
    assert not any(torch.equal(a, b) for a, b in zip(ours, fresh.parameters())), 'the updates moved no weight'


def test_the_clipping_norm_is_logged_one_update_late() -> None:
    _, torch_norms, logged = _train(SyncFreeOptimWrapper, 'sync_free_lag')
    assert min(torch_norms) > MAX_NORM  # every update clipped
    assert logged[0] is None  # nothing is read in the update that made the norm
    for i in range(1, len(logged)):  # update i logs update i-1's norm, and only that
        assert len(logged[i]) == i
        assert abs(logged[i][-1] - torch_norms[i - 1]) < 1e-5 * torch_norms[i - 1]


class _ReadSpy(torch.Tensor):
    """A norm tensor that records when the host reads its value."""

    reads: list[int] = []
    update = 0

    def __float__(self) -> float:
        _ReadSpy.reads.append(_ReadSpy.update)
        return super().__float__()


def test_no_update_reads_its_own_norm() -> None:
    MessageHub.get_instance('sync_free_spy')
    model, batches = _model_and_batches()
    wrapper = SyncFreeOptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2), clip_grad=dict(max_norm=MAX_NORM))
    clip = wrapper.clip_func
    wrapper.clip_func = lambda params, **kw: clip(params, **kw).as_subclass(_ReadSpy)
    _ReadSpy.reads = []
    for update, x in enumerate(batches):
        _ReadSpy.update = update
        wrapper.update_params(model(x).pow(2).mean())
    # each norm is read once, in the next update (mmengine's OptimWrapper reads it at once: [0, 1, 2, 3])
    assert _ReadSpy.reads == [1, 2, 3]

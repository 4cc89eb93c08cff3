"""Small helpers shared by the runner glue and the hooks."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from mmengine.hooks import LoggerHook
from mmengine.model import is_model_wrapper
from torch import nn


def deepspeed_engine_of(model: Any) -> Optional[Any]:
    """The ``DeepSpeedEngine`` behind ``runner.model``, or None for the plain runner."""
    # Compared by name so the plain runner never needs to import deepspeed.
    name = type(model).__name__
    if name == 'MMDeepSpeedEngineWrapper':
        return model.model
    if name == 'DeepSpeedEngine':
        return model
    return None


def unwrap_model(model: Any) -> nn.Module:
    """Return the user's model inside DDP / DeepSpeed / mmengine wrappers.

    The chain differs per runner: ``MMDistributedDataParallel.module`` for the plain runner,
    ``MMDeepSpeedEngineWrapper.model`` (a ``DeepSpeedEngine``) ``.module`` for DeepSpeed.
    """
    engine = deepspeed_engine_of(model)
    if engine is not None:
        return engine.module
    while is_model_wrapper(model):
        model = model.module
    return model


def logger_interval(runner: Any, default: int = 10) -> int:
    """The LoggerHook's interval (``default`` without one): the hooks that feed the log line use it."""
    loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
    return loggers[0].interval if loggers else default


def per_tensor_norms(
    tensors: Sequence[torch.Tensor], dtype: torch.dtype, device: Optional[torch.device] = None
) -> torch.Tensor:
    """The L2 norm of each tensor, accumulated in ``dtype``, in list order, on ``device`` (default:
    the first tensor's): one ``torch._foreach_norm`` launch per (device, dtype) of the inputs, not
    a few per tensor (the gradient guard's and DeepSpeed's per-step norms run in the GPU's path)."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    device = tensors[0].device if device is None else device
    norms: list[Optional[torch.Tensor]] = [None] * len(tensors)
    for indices in groups.values():
        for i, n in zip(indices, torch._foreach_norm([tensors[i] for i in indices], 2, dtype=dtype)):
            norms[i] = n.to(device)
    return torch.stack(norms)


class HostCopy:
    """A device tensor's value, copied to the host without waiting for the device.

    On CUDA the copy goes to pinned memory with ``non_blocking=True`` behind an event, and
    :meth:`get` waits for that event only: read one step later, the device passed it long ago
    (reading at once with ``.cpu()`` would drain the whole queue). Elsewhere the tensor itself
    is kept (the CPU has computed it already; gloo's async collectives write into it in place).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self.event: Optional[torch.cuda.Event] = None
        if tensor.device.type == 'cuda':
            self.value = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.value.copy_(tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.value = tensor

    def get(self) -> torch.Tensor:
        """The host value (waits for the copy only)."""
        if self.event is not None:
            self.event.synchronize()
        return self.value

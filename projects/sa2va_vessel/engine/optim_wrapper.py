"""The plain runner's optimizer wrapper: mmengine's ``OptimWrapper`` without its per-step wait.

mmengine's ``OptimWrapper`` logs the gradient-clipping norm with ``float(norm)`` in every update.
On a GPU that makes the host wait for the whole backward before it may queue the optimizer step
and the next iteration's forward, so a host-bound step loses the overlap of host and device (the
gradient guard reads its check one update late for the same reason, ``engine/hooks.py``).

:class:`SyncFreeOptimWrapper` clips exactly as mmengine does (torch's ``clip_grad_norm_``, the
config's ``clip_grad``), copies the norm to pinned memory behind an event
(:class:`~.utils.HostCopy`) and logs it as ``train/grad_norm`` at the next update, when the copy
has long finished. So the logged norm of iteration ``i`` is that of update ``i - 1``; the last
update's norm is not logged.
"""

from __future__ import annotations

from typing import Optional

import torch
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS
from .utils import HostCopy


@OPTIM_WRAPPERS.register_module()
class SyncFreeOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose clipping norm is logged one update late, without a device sync."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._pending_norm: Optional[HostCopy] = None

    def _clip_grad(self) -> None:
        self.log_pending_norm()
        params = [
            p
            for group in self.optimizer.param_groups
            for p in group['params']
            if p.requires_grad and p.grad is not None
        ]
        if not params:
            return
        norm = self.clip_func(params, **self.clip_grad_kwargs)
        # torch.nn.utils.clip_grad_value_ returns None: nothing to log
        if isinstance(norm, torch.Tensor):
            self._pending_norm = HostCopy(norm.detach())

    def log_pending_norm(self) -> Optional[float]:
        """Log the previous update's clipping norm (``train/grad_norm``); returns it (None: none)."""
        if self._pending_norm is None:
            return None
        value = float(self._pending_norm.get())
        self._pending_norm = None
        self.message_hub.update_scalar(f'train/{self.grad_name}', value)
        return value

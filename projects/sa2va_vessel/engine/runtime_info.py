"""mmengine's ``RuntimeInfoHook``, without a device synchronisation at every iteration.

mmengine's hook writes each training output (the loss parts) into the message hub after every
iteration, and the message hub turns each tensor into a Python float with ``.item()``. On a GPU
each ``.item()`` waits for the whole step to finish, so the host cannot queue the next
iteration's work while the GPU finishes this one: the GPU idles while the host runs the hooks,
fetches the next batch and launches the next forward.

``DeferredRuntimeInfoHook`` keeps the detached loss tensors on the device and reads them all in
one copy when something will look at them: at the LoggerHook's interval (before the LoggerHook
runs: this hook's priority is higher), before validation, when a checkpoint is written (the
message hub's history is part of it) and at the end of training. The message hub then holds the
same values in the same order as with mmengine's hook; only the time they arrive differs.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from mmengine.hooks import RuntimeInfoHook

from ..registry import HOOKS
from .utils import logger_interval


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """``RuntimeInfoHook`` that reads the training outputs off the device once per log interval.

    Args:
        interval: read them every this many iterations; ``None`` uses the LoggerHook's interval.
    """

    def __init__(self, interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self._pending: list[tuple[str, Any]] = []

    def before_train(self, runner: Any) -> None:
        super().before_train(runner)
        if self.interval is None:
            self.interval = logger_interval(runner)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Optional[dict] = None
    ) -> None:
        for key, value in (outputs or {}).items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1:  # what the message hub would reject, rejected now
                    raise ValueError(f'train output {key!r} must be a scalar, got shape {tuple(value.shape)}')
                value = value.detach()
            self._pending.append((f'train/{key}', value))
        done = runner.iter + 1
        if done % self.interval == 0 or done >= runner.max_iters:
            self.flush(runner)

    def flush(self, runner: Any) -> None:
        """Write the pending outputs into the message hub, in order (one device read)."""
        if not self._pending:
            return
        tensors = [v for _, v in self._pending if isinstance(v, torch.Tensor)]
        # one stack and one copy for all of them (all on one device: the model's outputs)
        values = iter(torch.stack([t.float().reshape(()) for t in tensors]).tolist()) if tensors else iter(())
        for key, value in self._pending:
            runner.message_hub.update_scalar(key, next(values) if isinstance(value, torch.Tensor) else value)
        self._pending = []

    def before_val(self, runner: Any) -> None:
        self.flush(runner)
        super().before_val(runner)

    def before_checkpoint_write(self, runner: Any) -> None:
        # the project's runners call this before they take the message hub's state, on both
        # runners (mmengine's DeepSpeed strategy never calls before_save_checkpoint)
        self.flush(runner)

    def after_train(self, runner: Any) -> None:
        self.flush(runner)
        super().after_train(runner)

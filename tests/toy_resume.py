"""Test-only pieces for the preemption / exact-resume tests.

* ``ToyDropoutSegModel``: the toy model with dropout on the LoRA path, so every step consumes
  the torch RNG and a resume that does not restore RNG states shows up as different losses.
* ``LossTraceHook``: per rank and step, the samples (``toy_hooks.sample_ids``: indices, or a video
  clip's frames), the exact losses (``float.hex``),
  a hash of the trainable weights and the pid, in ``<work_dir>/losses_rank<r>.jsonl``.
  ``TOY_STEP_SLEEP`` (seconds) slows every step so a test can signal a run mid-way.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

import torch
import torch.nn.functional as F
from mmengine.hooks import Hook
from mmengine.registry import HOOKS, MODELS

from projects.sa2va_vessel.engine.utils import unwrap_model
from tests.toy_hooks import sample_ids, trainable_hash
from tests.toy_model import ToySegModel


@MODELS.register_module()
class ToyDropoutSegModel(ToySegModel):
    def __init__(self, dropout: float = 0.3, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropout = dropout

    def _mask_logits(self, data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        mask_logits, hidden = super()._mask_logits(data)
        return F.dropout(mask_logits, self.dropout, self.training), hidden


@HOOKS.register_module()
class LossTraceHook(Hook):
    priority = 'LOWEST'

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None, outputs: Optional[dict] = None
    ) -> None:
        record = dict(
            iter=runner.iter,
            rank=runner.rank,
            pid=os.getpid(),
            indices=sample_ids(data_batch['data_samples']),
            losses={k: float(v).hex() for k, v in sorted(outputs.items())},
            weights=trainable_hash(unwrap_model(runner.model)),
        )
        path = os.path.join(runner.work_dir, f'losses_rank{runner.rank}.jsonl')
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')
        delay = float(os.environ.get('TOY_STEP_SLEEP', '0') or 0)
        if delay:
            time.sleep(delay)


def read_losses(work_dir: Any, rank: int = 0) -> list[dict]:
    path = os.path.join(str(work_dir), f'losses_rank{rank}.jsonl')
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


@HOOKS.register_module()
class SignalAtIterHook(Hook):
    """Send ``signum`` to this very process during iteration ``at`` (after its forward would
    have started: the handler only sets a flag, the step finishes)."""

    def __init__(self, at: int, signum: str = 'SIGUSR1') -> None:
        self.at = at
        self.signum = signum

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None) -> None:
        if runner.iter == self.at:
            import signal

            os.kill(os.getpid(), getattr(signal, self.signum))

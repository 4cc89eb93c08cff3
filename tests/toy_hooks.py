"""Test-only hook: per rank, which samples each step consumed and a hash of the weights."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from projects.sa2va_vessel.engine.utils import unwrap_model


def sample_ids(data_samples: list[dict]) -> list[Any]:
    """What identifies each sample of a batch: the toy data's index, a video clip's
    [video, frame indices], or the real data's image path."""
    return [
        int(s['index']) if 'index' in s else [s['video'], list(s['frame_indices'])] if 'video' in s else s['img_path']
        for s in data_samples
    ]


def trainable_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if param.requires_grad:
            digest.update(name.encode())
            digest.update(param.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


@HOOKS.register_module()
class RankTraceHook(Hook):
    """Append ``{iter, rank, indices, weights}`` to ``<work_dir>/trace_rank<r>.jsonl``."""

    priority = 'LOWEST'

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Optional[dict] = None, outputs: Optional[dict] = None
    ) -> None:
        path = os.path.join(runner.work_dir, f'trace_rank{runner.rank}.jsonl')
        record = dict(
            iter=runner.iter,
            rank=runner.rank,
            indices=sample_ids(data_batch['data_samples']),
            weights=trainable_hash(unwrap_model(runner.model)),
        )
        with open(path, 'a') as f:
            f.write(json.dumps(record) + '\n')

"""Validation that also runs generation mode, where the model must emit ``[SEG]`` itself.

Teacher-forced validation gives the model its answer (``Sure, [SEG].``); a model that stopped
writing ``[SEG]`` would still score well there, while the official ``predict_forward`` (which
generates) would return no mask. ``VesselValLoop`` is mmengine's ``ValLoop`` plus, for each batch
and only when a metric of the evaluator asks for it (``needs_generation``, i.e.
``VesselGenSegMetric``), one greedy generation pass (``evaluation.inference.greedy_seg_generate``)
whose result it adds to every prediction as ``pred['generation']``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from mmengine.logging import print_log
from mmengine.runner import ValLoop

from ..registry import LOOPS
from .utils import unwrap_model


@LOOPS.register_module()
class VesselValLoop(ValLoop):
    """``ValLoop`` with the generation pass (see module docstring).

    Args:
        max_new_tokens: the generation budget per sample (the answer is a few tokens).
        runner, dataloader, evaluator, fp16: as ``mmengine.runner.ValLoop``.
    """

    def __init__(
        self, runner: Any, dataloader: Any, evaluator: Any, fp16: bool = False, max_new_tokens: int = 32
    ) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self.max_new_tokens = int(max_new_tokens)
        self.generation = any(getattr(m, 'needs_generation', False) for m in self.evaluator.metrics)
        self._stop_ids: set[int] | None = None
        if self.generation:
            print_log(
                'validation: teacher-forced and generation mode (the model writes [SEG] '
                f'itself, at most {self.max_new_tokens} new tokens)',
                logger='current',
            )

    def _stops(self) -> set[int]:
        if self._stop_ids is None:
            from ..evaluation.inference import stop_token_ids

            dataset = self.dataloader.dataset
            if not hasattr(dataset, 'tokenizer') or not hasattr(dataset, 'template'):
                raise TypeError(
                    f'{type(dataset).__name__}: generation-mode validation needs the '
                    "dataset's tokenizer and template (VesselSegDataset has them)"
                )
            self._stop_ids = stop_token_ids(dataset.tokenizer, dataset.template)
        return self._stop_ids

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Sequence[dict]) -> None:
        if not self.generation:
            return super().run_iter(idx, data_batch)
        from ..evaluation.inference import greedy_seg_generate

        self.runner.call_hook('before_val_iter', batch_idx=idx, data_batch=data_batch)
        with torch.autocast(device_type='cuda', enabled=self.fp16 and torch.cuda.is_available()):
            outputs = self.runner.model.val_step(data_batch)
        generated = greedy_seg_generate(
            unwrap_model(self.runner.model), data_batch, self._stops(), max_new_tokens=self.max_new_tokens
        )
        for pred, gen in zip(outputs, generated):
            pred['generation'] = {'prob': gen['prob'], 'missing_seg': gen['missing_seg'], 'n_seg': gen['n_seg']}
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook('after_val_iter', batch_idx=idx, data_batch=data_batch, outputs=outputs)

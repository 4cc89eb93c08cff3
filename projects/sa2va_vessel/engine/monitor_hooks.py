"""Monitoring hooks: how far each trainable group moved, validation pictures, best-checkpoint record.

* ``UpdateNormHook`` writes ``train/update_norm/<group>`` = ||w_t - w_0|| (L2 over the group's
  parameters, w_0 = the weights when this run's training started, i.e. after a resume the
  resumed weights) to the message hub every ``interval`` iterations; the LoggerHook forwards it
  to the log line and to TensorBoard as ``update_norm/<group>``, next to the guard's
  ``grad_norm/<group>``. It reads the module's own weights (what the forward uses; under
  DeepSpeed bf16 that is the bf16 copy, so moves below bf16 resolution read as 0): no
  collective, so it cannot hang a distributed run.
* ``ValVisualizationHook`` (rank 0) keeps the first ``num_images`` validation samples and, after
  each validation, sends to the visualizer (TensorBoard + local PNGs): one panel per image
  ``val_overlay/<stem>`` (image | ground truth | probability | errors: TP white, FP red, FN
  blue, outside the FOV grey), the threshold curve of ``VesselSegMetric.curve`` as a chart
  ``val/threshold_curve`` and as scalars ``val_curve/<series>@<t>``.
* ``BestCheckpointRecordHook`` writes ``best_checkpoint.json`` beside the best checkpoint that
  mmengine's ``CheckpointHook(save_best=...)`` just saved: checkpoint name, iteration, the
  selection metric and rule, the threshold that goes with it, and every validation metric.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook, Hook

from ..models.training_checkpoint import BEST_RECORD, write_best_record
from ..registry import HOOKS
from .hooks import nonempty_trainable_groups
from .utils import logger_interval, unwrap_model

# The threshold at which each selection metric of VesselSegMetric is measured.
THRESHOLD_OF_METRIC = {
    'best_dice': 'best_thr',
    'best_dice_mean': 'best_thr_mean',
    'gen_best_dice': 'gen_best_thr',
    'gen_best_dice_mean': 'gen_best_thr_mean',
}


@HOOKS.register_module()
class UpdateNormHook(Hook):
    """Log ||w_t - w_0|| per trainable group (see module docstring).

    Args:
        interval: every this many iterations; ``None`` uses the LoggerHook's interval.
    """

    priority = 'ABOVE_NORMAL'  # before the LoggerHook (BELOW_NORMAL) reads the message hub

    def __init__(self, interval: Optional[int] = None) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self._start: dict[str, list[torch.Tensor]] = {}

    def before_train(self, runner: Any) -> None:
        if self.interval is None:
            self.interval = logger_interval(runner)
        self._groups = nonempty_trainable_groups(unwrap_model(runner.model))
        # Host fp32 copies: the GPU keeps no second set of trainable weights. Pinned, so that
        # update_norms() streams them back asynchronously instead of one blocking copy each.
        pin = torch.cuda.is_available()
        self._start = {g: [_host_copy(p, pin) for _, p in params] for g, params in self._groups.items()}

    def update_norms(self) -> dict[str, float]:
        """||w_t - w_0|| of every group, now.

        The differences are taken on the weights' device, w_0 streamed back one tensor at a time
        (a transient copy of one parameter), and the squared sums stay there: one synchronisation
        per call. (Copying every weight to the host cost ~1.1 s per logged iteration at 2B.)
        """
        squares = []
        for group, params in self._groups.items():
            total = None
            for (_, p), p0 in zip(params, self._start[group]):
                w = p.detach()
                diff = w.float() - p0.to(w.device, non_blocking=True)
                sq = torch.linalg.vector_norm(diff, dtype=torch.float32) ** 2
                total = sq if total is None else total + sq
            squares.append(torch.zeros(()) if total is None else total.cpu())
        return OrderedDict((group, math.sqrt(float(sq))) for group, sq in zip(self._groups, squares))

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if (runner.iter + 1) % self.interval != 0 and runner.iter + 1 != runner.max_iters:
            return
        for group, value in self.update_norms().items():
            runner.message_hub.update_scalar(f'train/update_norm/{group}', value)


def _host_copy(param: torch.Tensor, pin: bool) -> torch.Tensor:
    copy = param.detach().float().cpu().clone()
    return copy.pin_memory() if pin else copy


def _ensure_local_image_dirs(runner: Any, name: str) -> None:
    """LocalVisBackend writes ``<vis_image>/<name>_<step>.png`` without creating sub-folders
    for names with '/'; create them so TensorBoard can group tags while PNGs still land."""
    for backend in getattr(runner.visualizer, '_vis_backends', {}).values():
        img_dir = getattr(backend, '_img_save_dir', None)
        if img_dir is None and type(backend).__name__ == 'LocalVisBackend':
            backend._init_env()  # force_init_env would do the same on first use
            img_dir = getattr(backend, '_img_save_dir', None)
        if img_dir and '/' in name:
            os.makedirs(os.path.join(img_dir, os.path.dirname(name)), exist_ok=True)


def _vessel_metric(runner: Any) -> Optional[Any]:
    loop = getattr(runner, '_val_loop', None)
    evaluator = getattr(loop, 'evaluator', None)
    for metric in getattr(evaluator, 'metrics', []) or []:
        if hasattr(metric, 'curve'):
            return metric
    return None


@HOOKS.register_module()
class ValVisualizationHook(Hook):
    """Validation pictures and the threshold curve in TensorBoard (see module docstring).

    Args:
        num_images: how many validation samples to show (the first ones rank 0 sees).
        max_side: longer side of each of the four panels, in pixels.
        threshold: threshold of the error map; ``None`` uses the metric's operating threshold.
        curve_series: which curves of ``VesselSegMetric.curve`` to draw and log as scalars.
        curve_scalars: also log ``val_curve/<series>@<t>`` scalars.
    """

    priority = 'NORMAL'

    def __init__(
        self,
        num_images: int = 4,
        max_side: int = 512,
        threshold: Optional[float] = None,
        curve_series: tuple[str, ...] = ('global_dice', 'mean_dice'),
        curve_scalars: bool = True,
    ) -> None:
        self.num_images = int(num_images)
        self.max_side = int(max_side)
        self.threshold = threshold
        self.curve_series = tuple(curve_series)
        self.curve_scalars = curve_scalars
        self._panels: list[tuple[str, np.ndarray]] = []

    def before_val_epoch(self, runner: Any) -> None:
        self._panels = []

    def _operating_threshold(self, runner: Any) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        metric = _vessel_metric(runner)
        return float(getattr(metric, 'threshold', 0.5))

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if runner.rank != 0 or len(self._panels) >= self.num_images or not outputs:
            return
        from ..evaluation.visualize import overlay_panel

        samples = data_batch.get('data_samples', []) if isinstance(data_batch, dict) else []
        threshold = self._operating_threshold(runner)
        for sample, pred in zip(samples, outputs):
            if len(self._panels) >= self.num_images or pred.get('missing_seg'):
                continue
            prob = pred['prob']
            prob = (
                prob.detach().float().cpu().numpy() if isinstance(prob, torch.Tensor) else np.asarray(prob, np.float32)
            )
            mask = np.asarray(sample['mask'])
            if prob.ndim == 3:
                prob, mask = prob[0], mask[0] if mask.ndim == 3 else mask
            fov = sample.get('fov')
            image = _read_image_or_none(sample.get('img_path'))
            panel = overlay_panel(image, mask, prob, threshold, fov, self.max_side)
            stem = Path(str(sample.get('img_path', f'sample{len(self._panels)}'))).stem
            self._panels.append((stem, panel))

    def after_val_epoch(self, runner: Any, metrics: Optional[dict] = None) -> None:
        if runner.rank != 0:
            return
        step = runner.iter
        for stem, panel in self._panels:
            name = f'val_overlay/{stem}'
            _ensure_local_image_dirs(runner, name)
            runner.visualizer.add_image(name, panel, step=step)
        self._panels = []
        metric = _vessel_metric(runner)
        curve = getattr(metric, 'curve', None)
        if not curve:
            return
        from ..evaluation.visualize import draw_curve

        best = (metrics or {}).get('vessel/best_thr')
        chart = draw_curve(
            curve,
            self.curve_series,
            threshold=getattr(metric, 'threshold', None),
            best_threshold=best,
            title=f'iter {step}',
        )
        _ensure_local_image_dirs(runner, 'val/threshold_curve')
        runner.visualizer.add_image('val/threshold_curve', chart, step=step)
        if self.curve_scalars:
            scalars = {
                f'val_curve/{s}@{t:.2f}': float(v)
                for s in self.curve_series
                if s in curve
                for t, v in zip(curve['thresholds'], curve[s])
                if np.isfinite(v)
            }
            runner.visualizer.add_scalars(scalars, step=step)


def _read_image_or_none(path: Optional[str]) -> Optional[np.ndarray]:
    if not path:
        return None
    try:
        from ..datasets.readers import read_image

        return read_image(path)
    except Exception:  # a toy/in-memory sample has no file: show a grey background
        return None


def best_checkpoint_hook(runner: Any) -> Optional[CheckpointHook]:
    """The CheckpointHook that keeps a best checkpoint by one metric, or None."""
    for hook in runner.hooks:
        if isinstance(hook, CheckpointHook) and getattr(hook, 'save_best', None):
            return hook
    return None


def threshold_key_of(metric_key: str) -> str:
    """The metric key of the threshold at which ``metric_key`` was measured."""
    prefix, _, name = metric_key.rpartition('/')
    thr = THRESHOLD_OF_METRIC.get(name, 'threshold')
    return f'{prefix}/{thr}' if prefix else thr


@HOOKS.register_module()
class BestCheckpointRecordHook(Hook):
    """Write ``best_checkpoint.json`` when ``CheckpointHook(save_best=...)`` saved a new best.

    The record: ``checkpoint`` (file/dir name, beside the JSON), ``iteration``, ``metric``,
    ``rule``, ``score``, ``threshold`` (the one the metric was measured at: ``best_thr`` for
    ``best_dice``, ``best_thr_mean`` for ``best_dice_mean``, else the operating ``threshold``),
    ``threshold_key`` and ``metrics`` (all validation scalars of that round).
    """

    priority = 'LOWEST'  # after the CheckpointHook (VERY_LOW) has saved the checkpoint

    def __init__(self, filename: str = BEST_RECORD) -> None:
        self.filename = filename

    def before_train(self, runner: Any) -> None:
        hook = best_checkpoint_hook(runner)
        if hook is None:
            runner.logger.warning(
                'BestCheckpointRecordHook: no CheckpointHook with save_best; no best checkpoint will be recorded.'
            )
        elif len(hook.key_indicators) != 1:
            raise ValueError(f'BestCheckpointRecordHook supports one save_best metric, got {hook.key_indicators}')

    def after_val_epoch(self, runner: Any, metrics: Optional[dict] = None) -> None:
        hook = best_checkpoint_hook(runner)
        if hook is None or not metrics or hook.best_ckpt_path is None:
            return
        key = hook.key_indicators[0]
        step = runner.epoch if hook.by_epoch else runner.iter  # as CheckpointHook names it
        expected = f'best_{key}_{hook.filename_tmpl.format(step)}'.replace('/', '_')
        if os.path.basename(str(hook.best_ckpt_path)) != expected:
            return  # no new best this round
        if not is_main_process():
            return
        thr_key = threshold_key_of(key)
        record = {
            'checkpoint': expected,
            'iteration': int(runner.iter),
            'metric': key,
            'rule': hook.rules[0],
            'score': _plain(metrics.get(key)),
            'threshold': _plain(metrics.get(thr_key)),
            'threshold_key': thr_key,
            'metrics': {k: _plain(v) for k, v in metrics.items()},
        }
        path = write_best_record(os.path.dirname(str(hook.best_ckpt_path)), record, self.filename)
        runner.logger.info(f'Best checkpoint record: {path} ({key}={record["score"]}, threshold {record["threshold"]})')


def _plain(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value

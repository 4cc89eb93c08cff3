"""mmengine metric for vessel segmentation from mask probabilities.

``process`` runs on every rank and keeps, per sample, a few KB of sufficient statistics
(confusion counts at the operating threshold and at each sweep threshold, per-class
probability histograms, clDice skeleton counts and the exact per-image scores); never an
image. ``BaseMetric.evaluate`` gathers them across ranks, ``compute_metrics`` (rank 0) turns
them into scalars, and the threshold curve is broadcast back to every rank in ``self.curve``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from mmengine.dist import broadcast_object_list
from mmengine.evaluator import BaseMetric

from ..registry import METRICS
from . import metrics as M

# Per-image scores that image_summary returns and compute_metrics averages (also the per-image CSV's).
PER_IMAGE_SCORES: tuple[str, ...] = (
    'dice',
    'iou',
    'cldice',
    'sens',
    'spec',
    'precision',
    'acc',
    'roc_auc',
    'pr_auc',
    'hd95',
    'nsd',
    'betti0_error',
    'betti1_error',
)


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():
            x = x.float()  # bf16/fp16 -> fp32 before numpy (numpy has no bf16)
        return x.cpu().numpy()
    return np.asarray(x)


def _nanmean(values: Sequence[float]) -> float:
    """Mean skipping NaN (undefined per-image values); NaN when nothing is defined."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float('nan')


@METRICS.register_module()
class VesselSegMetric(BaseMetric):
    """Dice, IoU, clDice, sensitivity, specificity, accuracy, ROC AUC, PR AUC of vessel masks.

    Every ``[SEG]`` mask of a sample (``S`` of them) counts as one image for the per-image
    means; ``fov`` (when not None) restricts every metric.

    Args:
        threshold: operating threshold of the headline metrics (``prob >= threshold``). Keep
            0.5 on validation; on the test set pass the threshold chosen on validation
            (``best_thr``), never the test set's own best.
        thresholds: sweep thresholds, strictly increasing (default 0.05..0.95 step 0.05).
        n_bins: bins of the per-class probability histograms that pool ROC/PR AUC.
        allow_binary: accept predictions that hold only {0, 1} (otherwise ``ValueError``).
        log_curve: also return the pooled Dice of every sweep threshold as scalars
            ``global_dice@<t>`` (the curve is always in ``self.curve``).
        skeleton: clDice skeleton, ``'skimage'`` (default; the clDice reference code's, so
            values compare with published ones) or ``'guo_hall'`` (see metrics.SKELETONS).
        nsd_tolerance: NSD tolerance in pixels (surface.py).
        collect_device, prefix, collect_dir: see ``mmengine.evaluator.BaseMetric``.
    """

    default_prefix: str | None = 'vessel'

    def __init__(
        self,
        threshold: float = 0.5,
        thresholds: Sequence[float] | None = None,
        n_bins: int = M.DEFAULT_AUC_BINS,
        allow_binary: bool = False,
        log_curve: bool = False,
        skeleton: str = 'skimage',
        nsd_tolerance: float = M.DEFAULT_NSD_TOLERANCE,
        collect_device: str = 'cpu',
        prefix: str | None = None,
        collect_dir: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f'threshold must be in [0, 1], got {threshold}')
        t = np.asarray(M.SWEEP_THRESHOLDS if thresholds is None else thresholds, dtype=np.float64)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0):
            raise ValueError('thresholds must be a non-empty strictly increasing sequence')
        self.threshold = float(threshold)
        self.thresholds = t
        self.n_bins = int(n_bins)
        self.allow_binary = allow_binary
        self.log_curve = log_curve
        if skeleton not in M.SKELETONS:
            raise ValueError(f'skeleton must be one of {M.SKELETONS}, got {skeleton!r}')
        self.skeleton = skeleton
        self.nsd_tolerance = float(nsd_tolerance)
        # Threshold curve of the last evaluation, on every rank (see evaluate()).
        self.curve: dict[str, list[float]] | None = None

    # ----------------------------------------------------------------------------- process
    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        """Summarise one batch. ``data_batch`` is the collate output, whose ``data_samples``
        hold ``mask`` (S, H, W) and ``fov`` (H, W) or None; ``data_samples`` is the model's
        predict output ``[{'prob': (S, H, W)}]``. A prediction may carry ``missing_seg``
        (generation mode): when True the sample scores as an empty mask and is counted in
        ``n_missing_seg``. Appends exactly one result per sample, as
        ``collect_results`` drops the sampler's padding by counting results."""
        gts = data_batch['data_samples'] if isinstance(data_batch, dict) else None
        if gts is None or len(gts) != len(data_samples):
            raise ValueError(
                'VesselSegMetric needs data_batch["data_samples"] with one dict '
                f'per prediction; got {type(data_batch).__name__} and '
                f'{len(data_samples)} predictions'
            )
        for gt_sample, pred in zip(gts, data_samples):
            mask = _to_numpy(gt_sample['mask'])
            missing = pred.get('missing_seg')
            if missing:
                # Generation mode: the model emitted no [SEG]; scored as an empty mask (all
                # probabilities 0), which the binary check must let through for this sample.
                prob = np.zeros(mask.shape, np.float32)
            else:
                prob = _to_numpy(pred['prob'])
            fov = gt_sample.get('fov')
            fov = None if fov is None else _to_numpy(fov)
            if prob.ndim == 2:
                prob = prob[None]
            if mask.ndim == 2:
                mask = mask[None]
            if prob.shape != mask.shape:
                raise ValueError(
                    f'prob shape {prob.shape} != mask shape {mask.shape} for '
                    f'{gt_sample.get("img_path")}: predictions must be at the '
                    'original resolution'
                )
            if fov is not None and fov.shape != mask.shape[1:]:
                raise ValueError(f'fov shape {fov.shape} != mask (H, W) {mask.shape[1:]}')
            per_mask = [
                M.image_summary(
                    prob[s],
                    mask[s],
                    fov,
                    threshold=self.threshold,
                    thresholds=self.thresholds,
                    n_bins=self.n_bins,
                    allow_binary=self.allow_binary or bool(missing),
                    skeleton=self.skeleton,
                    nsd_tolerance=self.nsd_tolerance,
                )
                for s in range(mask.shape[0])
            ]
            result = {'img_path': gt_sample.get('img_path'), 'masks': per_mask}
            if missing is not None:
                result['missing_seg'] = bool(missing)
            self.results.append(result)

    # ----------------------------------------------------------------------------- compute
    def compute_metrics(self, results: list) -> dict[str, float]:
        """Scalars (prefix ``vessel/`` added by BaseMetric):

        * ``n_images`` (masks evaluated), ``n_empty_gt`` (masks without GT vessel pixels),
          ``threshold`` (the operating threshold of everything @threshold below);
          ``n_missing_seg`` (samples without a generated [SEG]; only when the predictions
          say, i.e. in generation mode);
        * ``mean_<s>``: mean over images of the per-image score, NaN-skipping, for s in
          dice, iou, cldice, sens, spec, precision, acc, roc_auc, pr_auc (AUCs exact),
          hd95, nsd (pixels; surface.py), betti0_error, betti1_error (topology.py);
        * ``global_<s>``: the same scores from pixels pooled over all images (confusion
          counts summed; clDice from summed skeleton counts; AUCs from summed histograms);
        * ``best_thr``/``best_dice``: sweep threshold maximising pooled Dice and that Dice
          (compare with ``global_dice`` at ``threshold``); ``best_thr_mean``/
          ``best_dice_mean``: the same on the mean per-image Dice curve;
        * with ``log_curve``: ``global_dice@<t>`` for every sweep threshold.
        """
        items = [m for r in results for m in r['masks']]
        out: dict[str, float] = {
            'n_images': len(items),
            'n_empty_gt': int(sum(int(m['counts'][0] + m['counts'][2]) == 0 for m in items)),
            'threshold': self.threshold,
        }
        if any('missing_seg' in r for r in results):
            # generation mode: samples whose answer had no [SEG] (each scored as an empty mask)
            out['n_missing_seg'] = int(sum(bool(r.get('missing_seg')) for r in results))
        if not items:
            self.curve = None
            return out
        for s in PER_IMAGE_SCORES:
            out[f'mean_{s}'] = _nanmean([m[s] for m in items])

        counts = np.sum([m['counts'] for m in items], axis=0)
        out['global_dice'] = M.dice_score(counts)
        out['global_iou'] = M.iou_score(counts)
        out['global_cldice'] = M.cldice_from_counts(np.sum([m['cldice_counts'] for m in items], axis=0))
        out['global_sens'] = M.sensitivity(counts)
        out['global_spec'] = M.specificity(counts)
        out['global_precision'] = M.precision_score(counts)
        out['global_acc'] = M.accuracy(counts)
        roc, ap = M.auc_from_ranked_counts(
            np.sum([m['pos_hist'] for m in items], axis=0), np.sum([m['neg_hist'] for m in items], axis=0)
        )
        out['global_roc_auc'], out['global_pr_auc'] = roc, ap

        sweep = np.stack([m['sweep_counts'] for m in items])  # (N, T, 4)
        pooled = sweep.sum(axis=0)  # (T, 4)
        global_dice = np.asarray(M.dice_score(pooled))
        mean_dice = np.array([_nanmean(col) for col in M.dice_score(sweep).T])
        out['best_thr'], out['best_dice'] = M.best_threshold(self.thresholds, global_dice)
        out['best_thr_mean'], out['best_dice_mean'] = M.best_threshold(self.thresholds, mean_dice)
        if self.log_curve:
            for t, d in zip(self.thresholds, global_dice):
                out[f'global_dice@{t:.2f}'] = float(d)

        # The curve stays out of the returned dict: mmengine would print a list in the log
        # line and TensorBoard takes scalars only; a hook can plot self.curve instead.
        self.curve = {
            'thresholds': self.thresholds.tolist(),
            'global_dice': global_dice.tolist(),
            'mean_dice': mean_dice.tolist(),
            'global_iou': np.asarray(M.iou_score(pooled)).tolist(),
            'global_sens': np.asarray(M.sensitivity(pooled)).tolist(),
            'global_spec': np.asarray(M.specificity(pooled)).tolist(),
            'global_precision': np.asarray(M.precision_score(pooled)).tolist(),
        }
        return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}

    def evaluate(self, size: int) -> dict:
        """BaseMetric.evaluate, then share rank 0's curve so hooks on any rank can read it."""
        metrics = super().evaluate(size)
        curve = [self.curve]
        broadcast_object_list(curve)
        self.curve = curve[0]
        return metrics


GEN_PREFIX = 'gen_'


@METRICS.register_module()
class VesselGenSegMetric(VesselSegMetric):
    """``VesselSegMetric`` of generation mode: the model writes its answer, ``[SEG]`` included.

    Reads ``pred['generation'] = {'prob', 'missing_seg'}`` that ``VesselValLoop`` adds to each
    prediction (``models.generation.greedy_seg_generate``: greedy decoding from the prompt, the
    mask from the step whose input is the generated ``[SEG]``, as the official ``predict_forward``
    does). Every key of ``VesselSegMetric`` comes back with a ``gen_`` prefix
    (``vessel/gen_global_dice``, ``vessel/gen_best_dice``, ...), plus ``gen_missing_seg_rate``
    (samples without ``[SEG]``, scored as empty masks, over all samples). Select the best
    checkpoint by it with ``default_hooks.checkpoint.save_best='vessel/gen_best_dice'``.
    """

    needs_generation = True  # VesselValLoop runs the generation pass only when a metric asks

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        if any('generation' not in pred for pred in data_samples):
            raise ValueError(
                "VesselGenSegMetric: the predictions carry no 'generation' entry; "
                "validate with val_cfg=dict(type='VesselValLoop')"
            )
        super().process(data_batch, [dict(pred['generation']) for pred in data_samples])

    def compute_metrics(self, results: list) -> dict[str, float]:
        out = {f'{GEN_PREFIX}{k}': v for k, v in super().compute_metrics(results).items()}
        n_missing = int(sum(bool(r.get('missing_seg')) for r in results))
        out[f'{GEN_PREFIX}n_missing_seg'] = n_missing
        out[f'{GEN_PREFIX}missing_seg_rate'] = n_missing / len(results) if results else float('nan')
        return out

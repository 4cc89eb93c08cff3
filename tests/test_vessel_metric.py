"""End-to-end tests of VesselSegMetric with fake batches (hand-derived answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from projects.sa2va_vessel.evaluation import VesselSegMetric
from projects.sa2va_vessel.evaluation import metrics as M
from projects.sa2va_vessel.registry import METRICS

H, W = 11, 15


def line() -> np.ndarray:
    """3-px-wide line rows 4-6, cols 2..12 (33 px); skeleton row 5, cols 3..11 (9 px)."""
    m = np.zeros((H, W), bool)
    m[4:7, 2:13] = True
    return m


def sample(mask: np.ndarray, prob: np.ndarray, fov: np.ndarray | None = None, name: str = 'x') -> tuple[dict, dict]:
    """(collate data_sample, model output) of one image with S = 1."""
    gt = {'img_path': f'{name}.png', 'ori_size': (H, W), 'mask': mask[None], 'fov': fov}
    return gt, {'prob': torch.from_numpy(prob[None].astype(np.float32))}


def perfect() -> tuple[dict, dict]:
    """A: prob 0.9 on the line, 0.1 elsewhere. @0.5: TP 33, TN 132."""
    return sample(line(), np.where(line(), 0.9, 0.1), name='A')


def half() -> tuple[dict, dict]:
    """B: prob 0.9 on cols 2..7 of the line, 0.3 on cols 8..12, 0.1 elsewhere.
    @0.5: TP 18, FN 15, TN 132; Dice 36/51 = 12/17; clDice 5/7 (see test_metrics)."""
    prob = np.where(line(), 0.3, 0.1)
    prob[4:7, 2:8] = 0.9
    return sample(line(), prob, name='B')


def empty_gt() -> tuple[dict, dict]:
    """C: empty GT, prob 0.1, FOV rows 0-4 (75 px): TN 75; Dice 1 (both empty)."""
    fov = np.zeros((H, W), bool)
    fov[:5] = True
    return sample(np.zeros((H, W), bool), np.full((H, W), 0.1), fov, name='C')


def batch(*pairs: tuple[dict, dict]) -> tuple[dict, list[dict]]:
    data_batch = {'data': {}, 'data_samples': [gt for gt, _ in pairs]}
    return data_batch, [out for _, out in pairs]


def run(metric: VesselSegMetric) -> dict:
    for data_batch, outputs in (batch(perfect(), half()), batch(empty_gt()), batch(perfect())):
        metric.process(data_batch, outputs)
    assert len(metric.results) == 4  # one result per sample
    return metric.evaluate(4)


def test_registered_and_prefixed() -> None:
    metric = METRICS.build(dict(type='VesselSegMetric'))
    assert isinstance(metric, VesselSegMetric) and metric.prefix == 'vessel'


def test_end_to_end_three_batches() -> None:
    metric = VesselSegMetric(skeleton='guo_hall')  # the clDice values below are Guo-Hall's
    res = run(metric)
    assert all(k.startswith('vessel/') for k in res)
    r = {k.split('/', 1)[1]: v for k, v in res.items()}
    assert all(isinstance(v, (int, float)) for v in r.values())  # scalars only
    assert r['n_images'] == 4 and r['n_empty_gt'] == 1 and r['threshold'] == 0.5

    # per-image means over A, B, C, A
    assert r['mean_dice'] == pytest.approx((3 + 12 / 17) / 4)
    assert r['mean_iou'] == pytest.approx((3 + 18 / 33) / 4)
    assert r['mean_cldice'] == pytest.approx((3 + 5 / 7) / 4)
    assert r['mean_sens'] == pytest.approx((1 + 18 / 33 + 1) / 3)  # C's is undefined
    assert r['mean_spec'] == 1.0 and r['mean_precision'] == 1.0  # C's precision NaN
    assert r['mean_acc'] == pytest.approx((1 + (18 + 132) / 165 + 1 + 1) / 4)
    assert r['mean_roc_auc'] == 1.0 and r['mean_pr_auc'] == 1.0  # C's are NaN

    # pixel-pooled: TP 84, FN 15, FP 0, TN 132 + 132 + 75 + 132 = 471
    assert r['global_dice'] == pytest.approx(168 / 183)
    assert r['global_iou'] == pytest.approx(84 / 99)
    assert r['global_sens'] == pytest.approx(84 / 99)
    assert r['global_spec'] == 1.0 and r['global_precision'] == 1.0
    assert r['global_acc'] == pytest.approx(555 / 570)
    # summed skeleton counts: Tprec 1, Tsens (9 + 5 + 0 + 9) / 27 -> 2*23/27 / (50/27)
    assert r['global_cldice'] == pytest.approx(23 / 25)
    # every positive scores above every negative in each image and pooled
    assert r['global_roc_auc'] == 1.0 and r['global_pr_auc'] == 1.0

    # sweep: at 0.15..0.30 B's 0.3 pixels count and no 0.1 pixel does -> Dice 1;
    # ties broken towards 0.5 -> 0.30. At 0.5 pooled Dice is 168/183.
    assert r['best_thr'] == 0.3 and r['best_dice'] == 1.0
    assert r['best_thr_mean'] == 0.3 and r['best_dice_mean'] == 1.0

    curve = metric.curve
    assert curve is not None and curve['thresholds'] == M.SWEEP_THRESHOLDS.tolist()
    d = dict(zip(curve['thresholds'], curve['global_dice']))
    assert d[0.15] == d[0.3] == 1.0
    assert d[0.35] == d[0.5] == pytest.approx(168 / 183)
    # at 0.10 every 0.1 pixel is positive: FP = 132 + 132 + 75 + 132 = 471
    assert d[0.1] == pytest.approx(2 * 99 / (2 * 99 + 471))
    assert dict(zip(curve['thresholds'], curve['mean_dice']))[0.5] == pytest.approx(r['mean_dice'])
    assert metric.results == []  # cleared by evaluate


def test_operating_threshold_and_curve_scalars() -> None:
    res = run(VesselSegMetric(threshold=0.3, log_curve=True))
    assert res['vessel/global_dice'] == 1.0 and res['vessel/threshold'] == 0.3
    assert res['vessel/global_dice@0.30'] == 1.0
    assert res['vessel/global_dice@0.50'] == pytest.approx(168 / 183)


def test_padding_dropped_by_size() -> None:
    # The sampler may pad the last batch; evaluate(size) keeps the first `size` results.
    metric = VesselSegMetric()
    for data_batch, outputs in (batch(perfect(), half()), batch(empty_gt(), perfect())):
        metric.process(data_batch, outputs)
    r = metric.evaluate(3)
    assert r['vessel/n_images'] == 3
    assert r['vessel/mean_dice'] == pytest.approx((2 + 12 / 17) / 3)


def test_multiple_masks_per_sample_and_2d_inputs() -> None:
    metric = VesselSegMetric()
    gt, out = perfect()
    _, out_b = half()
    gt2 = dict(gt, mask=np.stack([line(), line()]))
    out2 = {'prob': torch.cat([out['prob'], out_b['prob']])}
    metric.process({'data_samples': [gt2]}, [out2])
    r = metric.evaluate(1)
    assert r['vessel/n_images'] == 2
    assert r['vessel/mean_dice'] == pytest.approx((1 + 12 / 17) / 2)


def test_thresholded_predictions_raise() -> None:
    gt, _ = perfect()
    hard = {'prob': torch.from_numpy(line()[None].astype(np.float32))}
    with pytest.raises(ValueError, match='thresholded'):
        VesselSegMetric().process({'data_samples': [gt]}, [hard])
    metric = VesselSegMetric(allow_binary=True)
    metric.process({'data_samples': [gt]}, [hard])
    assert metric.evaluate(1)['vessel/mean_dice'] == 1.0


def test_shape_mismatch_raises() -> None:
    gt, out = perfect()
    small = {'prob': out['prob'][:, :5]}
    with pytest.raises(ValueError, match='original resolution'):
        VesselSegMetric().process({'data_samples': [gt]}, [small])


def test_results_are_small() -> None:
    # what gets gathered across ranks: a few KB per image, no image-sized array
    metric = VesselSegMetric()
    size = 256
    mask = np.zeros((size, size), bool)
    mask[100:110] = True
    prob = np.where(mask, 0.8, 0.2) + np.random.default_rng(0).random((size, size)) * 0.1
    metric.process(
        {'data_samples': [{'mask': mask[None], 'fov': None}]},
        [{'prob': torch.from_numpy(prob[None].astype(np.float32))}],
    )
    arrays = [v for v in metric.results[0]['masks'][0].values() if isinstance(v, np.ndarray)]
    assert max(a.size for a in arrays) <= M.DEFAULT_AUC_BINS
    assert sum(a.nbytes for a in arrays) < 40_000  # two 1024-bin int64 histograms + counts

"""clDice against the reference recipe (skimage skeleton), HD95/NSD and Betti numbers on
hand-made shapes with known answers, and the bootstrap summary."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import euler_number
from skimage.morphology import skeletonize as sk_skeletonize

from projects.sa2va_vessel.evaluation import metrics as M
from projects.sa2va_vessel.evaluation.stats import mean_sd_ci
from projects.sa2va_vessel.evaluation.surface import hd95, mask_surface, nsd, surface_scores
from projects.sa2va_vessel.evaluation.topology import betti_errors, betti_numbers


def _vessels(seed: int, size: int = 96) -> np.ndarray:
    """Random thick/thin polylines: branching-vessel-like masks."""
    rng = np.random.default_rng(seed)
    m = np.zeros((size, size), bool)
    yy, xx = np.mgrid[:size, :size]
    for _ in range(6):
        (y0, x0), (y1, x1) = rng.integers(0, size, (2, 2))
        width = rng.uniform(0.6, 3.0)
        d = np.abs((y1 - y0) * (xx - x0) - (x1 - x0) * (yy - y0)) / max(np.hypot(y1 - y0, x1 - x0), 1)
        t = ((xx - x0) * (x1 - x0) + (yy - y0) * (y1 - y0)) / max((x1 - x0) ** 2 + (y1 - y0) ** 2, 1)
        m |= (d <= width) & (t >= 0) & (t <= 1)
    return m


def _reference_cldice(v_p: np.ndarray, v_l: np.ndarray) -> float:
    """The clDice authors' recipe, written out: skimage skeletons, cl_score = |v * s| / |s|."""

    def cl_score(v, s):
        return np.sum(v * s) / np.sum(s)

    tprec = cl_score(v_p, sk_skeletonize(v_l))
    tsens = cl_score(v_l, sk_skeletonize(v_p))
    return 2 * tprec * tsens / (tprec + tsens)


def test_cldice_skimage_matches_reference_recipe() -> None:
    for seed in range(6):
        gt, pred = _vessels(seed), _vessels(seed + 100) | _vessels(seed)[:, ::-1]
        assert M.cldice(pred, gt) == pytest.approx(_reference_cldice(pred, gt), abs=1e-12)
        assert M.cldice(pred, gt, skeleton='skimage') == M.cldice(pred, gt)  # the default
    # the two skeletons do differ on real shapes (so the option matters)
    gt, pred = _vessels(1), _vessels(2)
    assert M.cldice(pred, gt, skeleton='guo_hall') != M.cldice(pred, gt, skeleton='skimage')
    with pytest.raises(ValueError, match="unknown skeleton 'zhang'"):
        M.cldice(pred, gt, skeleton='zhang')


def test_surface_of_a_square_and_hd95_of_shifted_squares() -> None:
    a = np.zeros((40, 40), bool)
    a[10:20, 10:20] = True
    assert mask_surface(a).sum() == 36  # the 10x10 square's rim
    b = np.roll(a, 3, axis=1)  # shifted 3 px right
    # rims: left/right columns are 3 px from the other rim's columns, top/bottom rows lie on the
    # other rim for the overlapping columns; the 95th percentile is 3 in both directions
    d = surface_scores(b, a)
    assert d['hd95'] == pytest.approx(3.0)
    # NSD at tolerance 2, per direction (by symmetry the same both ways), rim pixels within 2 px
    # of the other rim: top and bottom rows 9 of 10 each (the far corner column is 3 px off),
    # the near column 4 of 8 (rows 11, 12, 17, 18 reach a rim row), the far column 0 of 8
    # (3 px from the other square's column) -> 22 of 36, NSD = 44 / 72
    assert d['nsd'] == pytest.approx(44 / 72)
    assert nsd(b, a, tolerance=3.0) == 1.0
    assert hd95(a, a) == 0.0 and nsd(a, a) == 1.0


def test_hd95_is_the_95th_percentile_not_the_max() -> None:
    gt = np.zeros((64, 64), bool)
    gt[30:34, 2:62] = True  # a 4-px vessel
    pred = gt.copy()
    pred[5, 5] = True  # one far false-positive speck
    far = 25.0  # speck to the vessel rim
    d = surface_scores(pred, gt)
    assert d['hd95'] < 1.0 < far  # 1 of ~125 rim pixels: below p95
    pred[0:12, 0:12] = True  # a big false blob: above p95
    assert surface_scores(pred, gt)['hd95'] > 10.0


def test_surface_distances_equal_the_distance_transform() -> None:
    from scipy.ndimage import distance_transform_edt

    from projects.sa2va_vessel.evaluation.surface import surface_distances

    for seed in range(4):
        gt, pred = _vessels(seed), _vessels(seed + 50)
        d_p, d_g = surface_distances(pred, gt)
        sp, sg = mask_surface(pred), mask_surface(gt)
        # reference: Euclidean distance transform of the other rim, read at this rim (row-major)
        np.testing.assert_allclose(d_p, distance_transform_edt(~sg)[sp], rtol=0, atol=1e-12)
        np.testing.assert_allclose(d_g, distance_transform_edt(~sp)[sg], rtol=0, atol=1e-12)


def test_surface_empty_cases_and_fov() -> None:
    empty, gt = np.zeros((30, 40), bool), np.zeros((30, 40), bool)
    gt[10:15, 5:35] = True
    assert surface_scores(empty, empty) == {'hd95': 0.0, 'nsd': 1.0}
    assert surface_scores(empty, gt) == {'hd95': pytest.approx(50.0), 'nsd': 0.0}  # diagonal 50
    pred = gt.copy()
    pred[25:28, 0:40] = True  # a false vessel outside the FOV
    fov = np.zeros_like(gt)
    fov[:20] = True
    assert surface_scores(pred, gt, fov) == {'hd95': 0.0, 'nsd': 1.0}
    assert surface_scores(pred, gt)['nsd'] < 1.0


def test_betti_numbers_of_known_shapes() -> None:
    m = np.zeros((20, 30), bool)
    m[2:8, 2:8] = True
    m[4:6, 4:6] = False  # a ring: 1 component, 1 hole
    m[12, 12] = m[13, 13] = True  # two diagonal pixels: 8-connected -> 1
    m[15:18, 20:28] = True  # a bar
    assert betti_numbers(m) == (3, 1)
    # a diagonal chain of background pixels does not open a ring (background is 4-connected)
    yy, xx = np.mgrid[:11, :11]
    diamond = np.abs(yy - 5) + np.abs(xx - 5) == 4  # a 1-px loop of diagonal steps
    assert betti_numbers(diamond) == (1, 1)  # 4-connected: 16 parts, no hole
    dot = np.zeros((9, 9), bool)
    dot[1:8, 1:8] = True
    dot[3:6, 3:6] = False
    dot[2, 2] = False  # meets the hole only diagonally
    assert betti_numbers(dot) == (1, 2)  # so it is a hole of its own
    for seed in range(5):  # Euler number: beta0 - beta1
        v = _vessels(seed)
        b0, b1 = betti_numbers(v)
        assert b0 - b1 == euler_number(v, connectivity=2)


def test_betti_holes_need_to_be_inside_the_fov() -> None:
    yy, xx = np.mgrid[:41, :41]
    fov = (yy - 20) ** 2 + (xx - 20) ** 2 <= 18**2
    m = np.zeros((41, 41), bool)
    m[20, :] = True  # a vessel across the whole FOV
    # background regions above and below the vessel touch the FOV rim: not holes
    assert betti_numbers(m, fov) == (1, 0)
    m[10, 10:31] = True
    m[10:21, 10] = m[10:21, 30] = True  # closes a box with the first vessel
    assert betti_numbers(m, fov) == (1, 1)
    e = betti_errors(m, np.zeros_like(m), fov)
    assert (e['betti0_error'], e['betti1_error']) == (1.0, 1.0)


def test_image_summary_and_metric_carry_the_new_scores() -> None:
    import torch

    from projects.sa2va_vessel.evaluation import VesselSegMetric

    gt = _vessels(3, 64)
    prob = np.where(gt, 0.8, 0.1).astype(np.float32)
    prob[58:, :4] = 0.9  # an extra blob: one more component
    assert not gt[56:, :6].any()
    s = M.image_summary(prob, gt)
    b = betti_errors(prob >= 0.5, gt)
    assert s['betti0_error'] == b['betti0_error'] == 1.0 and s['hd95'] == hd95(prob >= 0.5, gt)
    assert s['nsd'] == nsd(prob >= 0.5, gt) < 1.0
    metric = VesselSegMetric()
    sample = {'img_path': 'x.png', 'mask': gt[None], 'fov': None}
    metric.process({'data_samples': [sample]}, [{'prob': torch.from_numpy(prob[None])}])
    r = metric.evaluate(1)
    assert r['vessel/mean_betti0_error'] == 1.0 and r['vessel/mean_hd95'] == s['hd95']
    assert r['vessel/mean_cldice'] == pytest.approx(_reference_cldice(prob >= 0.5, gt))


def test_bootstrap_interval_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(0.8, 0.05, 40)
    a = mean_sd_ci(values, seed=0)
    assert a['n'] == 40 and a['mean'] == pytest.approx(values.mean())
    assert a['sd'] == pytest.approx(values.std(ddof=1))
    assert a['ci_low'] < a['mean'] < a['ci_high']
    # the percentile bootstrap of the mean is close to mean +- 1.96 sd / sqrt(n)
    half = 1.96 * a['sd'] / np.sqrt(40)
    assert a['ci_high'] - a['ci_low'] == pytest.approx(2 * half, rel=0.15)
    assert mean_sd_ci(values, seed=0) == a and mean_sd_ci(values, seed=1) != a
    b = mean_sd_ci([0.5, float('nan')])
    assert b['n'] == 1 and b['n_nan'] == 1 and b['mean'] == 0.5 and np.isnan(b['ci_low'])

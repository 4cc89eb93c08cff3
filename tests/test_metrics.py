"""Known-answer tests of projects/sa2va_vessel/evaluation/metrics.py (numpy, CPU)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from projects.sa2va_vessel.evaluation import metrics as M

REPO = Path(__file__).resolve().parents[1]


def test_imports_this_checkout() -> None:
    # An editable install of another worktree would silently test other code.
    assert Path(M.__file__).resolve().is_relative_to(REPO), (
        f'imported {M.__file__}, not this checkout {REPO}; run `python -m pytest` from the repository root'
    )


# ------------------------------------------------------------------------ helpers
def n_components(mask: np.ndarray, connectivity: int = 8) -> int:
    """Connected components by plain BFS (independent of the code under test)."""
    steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if connectivity == 8 or abs(dy) + abs(dx) == 1]
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    n = 0
    for y in range(h):
        for x in range(w):
            if mask[y, x] and not seen[y, x]:
                n += 1
                stack = [(y, x)]
                seen[y, x] = True
                while stack:
                    a, b = stack.pop()
                    for dy, dx in steps:
                        u, v = a + dy, b + dx
                        if 0 <= u < h and 0 <= v < w and mask[u, v] and not seen[u, v]:
                            seen[u, v] = True
                            stack.append((u, v))
    return n


def two_squares() -> tuple[np.ndarray, np.ndarray]:
    """20x20: GT = rows 0-9 x cols 0-9 (100 px); prediction (prob 0.8) = rows 5-14 x cols 0-9.
    Overlap rows 5-9: TP 50, FP 50 (rows 10-14), FN 50 (rows 0-4), TN 400 - 150 = 250."""
    gt = np.zeros((20, 20), bool)
    gt[0:10, 0:10] = True
    prob = np.full((20, 20), 0.2, np.float32)
    prob[5:15, 0:10] = 0.8
    return prob, gt


def line_3px() -> np.ndarray:
    """11x15 image, 3-px-wide horizontal line: rows 4-6, cols 2..12 (33 px)."""
    m = np.zeros((11, 15), bool)
    m[4:7, 2:13] = True
    return m


# ---------------------------------------------------------------- confusion and scores
def test_counts_and_scores_on_squares() -> None:
    prob, gt = two_squares()
    c = M.confusion_counts(prob, gt, 0.5)
    assert c.tolist() == [50, 50, 50, 250]
    assert M.dice_score(c) == pytest.approx(0.5)  # 2*50 / (100 + 50 + 50)
    assert M.iou_score(c) == pytest.approx(1 / 3)  # 50 / 150
    assert M.sensitivity(c) == pytest.approx(0.5)  # 50 / 100
    assert M.specificity(c) == pytest.approx(250 / 300)  # 250 / (250 + 50)
    assert M.precision_score(c) == pytest.approx(0.5)
    assert M.accuracy(c) == pytest.approx(300 / 400)
    # a bool prediction is used as is
    assert M.confusion_counts(prob >= 0.5, gt).tolist() == [50, 50, 50, 250]
    # Dice is F1
    p, r = M.precision_score(c), M.sensitivity(c)
    assert M.dice_score(c) == pytest.approx(2 * p * r / (p + r))


def test_threshold_is_inclusive() -> None:
    gt = np.array([[True, False]])
    prob = np.array([[0.5, 0.4999]], np.float32)
    assert M.confusion_counts(prob, gt, 0.5).tolist() == [1, 0, 0, 1]


def test_scores_vectorise_over_counts() -> None:
    counts = np.array([[50, 50, 50, 250], [0, 0, 0, 10]])
    np.testing.assert_allclose(M.dice_score(counts), [0.5, 1.0])


def test_fov_restriction_changes_specificity() -> None:
    prob, gt = two_squares()
    # FOV rows 0-14 (300 px): the 100 TN of rows 15-19 leave, everything else stays.
    fov = np.zeros((20, 20), bool)
    fov[0:15] = True
    c = M.confusion_counts(prob, gt, 0.5, fov)
    assert c.tolist() == [50, 50, 50, 150]
    assert M.specificity(c) == pytest.approx(150 / 200)  # was 250 / 300
    assert M.accuracy(c) == pytest.approx(200 / 300)
    assert M.dice_score(c) == pytest.approx(0.5)  # no TN in Dice: unchanged
    # FOV without rows 10-14 removes every false positive (and 50 TN): specificity 1.
    fov2 = np.ones((20, 20), bool)
    fov2[10:15] = False
    c2 = M.confusion_counts(prob, gt, 0.5, fov2)
    assert c2.tolist() == [50, 0, 50, 200]
    assert M.specificity(c2) == 1.0
    assert M.dice_score(c2) == pytest.approx(100 / 150)
    # the ranking metrics honour the FOV too: inside fov2 every negative scores 0.2 < 0.8
    # and positives score 0.8 or 0.2 -> AUC = P(pos > neg) + 0.5 P(tie) = 0.5 + 0.25
    assert M.roc_auc(prob, gt, fov2) == pytest.approx(0.75)
    # full image: positives 50 @0.8 + 50 @0.2, negatives 50 @0.8 + 250 @0.2:
    # (50 * (250 + 50/2) + 50 * 250/2) / (100 * 300) = 2/3
    assert M.roc_auc(prob, gt) == pytest.approx(2 / 3)


def test_empty_masks() -> None:
    empty = np.zeros((8, 8), bool)
    some = empty.copy()
    some[2:5, 2:5] = True
    low = np.full((8, 8), 0.1, np.float32)
    high = np.where(some, 0.9, 0.1).astype(np.float32)

    both_empty = M.binary_metrics(low, empty)
    assert both_empty['dice'] == 1.0 and both_empty['iou'] == 1.0
    assert both_empty['spec'] == 1.0 and both_empty['acc'] == 1.0
    assert np.isnan(both_empty['sens']) and np.isnan(both_empty['precision'])
    assert M.cldice(low, empty) == 1.0

    false_alarm = M.binary_metrics(high, empty)  # GT empty, prediction not
    assert false_alarm['dice'] == 0.0 and false_alarm['iou'] == 0.0
    assert np.isnan(false_alarm['sens']) and false_alarm['precision'] == 0.0
    assert M.cldice(high, empty) == 0.0

    missed = M.binary_metrics(low, some)  # prediction empty, GT not
    assert missed['dice'] == 0.0 and missed['sens'] == 0.0
    assert np.isnan(missed['precision'])
    assert M.cldice(low, some) == 0.0

    # ranking metrics need both classes (ROC) / positives (AP)
    assert np.isnan(M.roc_auc(high, empty)) and np.isnan(M.average_precision(high, empty))
    # an empty FOV: no pixel at all
    c = M.confusion_counts(high, some, fov=np.zeros((8, 8), bool))
    assert c.tolist() == [0, 0, 0, 0] and np.isnan(M.accuracy(c))


# ------------------------------------------------------------------------- skeleton
def test_skeleton_of_3px_line_is_its_centre_line() -> None:
    line = line_3px()
    expected = np.zeros_like(line)
    expected[5, 3:12] = True  # centre row; thinning trims one pixel at each end
    np.testing.assert_array_equal(M.skeletonize(line), expected)
    np.testing.assert_array_equal(M.skeletonize(line.T), expected.T)


def test_skeleton_small_and_diagonal_shapes() -> None:
    square2 = np.zeros((6, 6), bool)
    square2[2:4, 2:4] = True  # Zhang-Suen would erase this completely
    assert M.skeletonize(square2).sum() == 1

    diag = np.zeros((12, 12), bool)  # 2-px-thick diagonal, 18 px
    for i in range(1, 10):
        diag[i, i] = diag[i, i + 1] = True
    s = M.skeletonize(diag)
    assert s.sum() >= 9 and (s <= diag).all() and n_components(s) == 1
    # one pixel thin: no 2x2 block of skeleton pixels
    assert not (s[:-1, :-1] & s[1:, :-1] & s[:-1, 1:] & s[1:, 1:]).any()

    yy, xx = np.mgrid[:20, :20]
    r2 = (yy - 10) ** 2 + (xx - 10) ** 2
    ring = (r2 <= 49) & (r2 >= 16)
    s = M.skeletonize(ring)
    # the loop survives: the 4-connected background is still split into outside and hole
    assert n_components(s) == 1 and n_components(~s, connectivity=4) == 2

    assert M.skeletonize(np.zeros((5, 5), bool)).sum() == 0


def test_skeleton_keeps_every_component() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = rng.integers(4, 30, 2)
        m = rng.random((h, w)) < rng.uniform(0.3, 0.8)
        s = M.skeletonize(m)
        assert (s <= m).all()
        assert n_components(s) == n_components(m)


def vessel_like(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    m = np.zeros((size, size), bool)
    for _ in range(40):
        a, b = rng.uniform(0, size, 2)
        th = rng.uniform(0, np.pi)
        width = rng.uniform(1, 8)
        m |= np.abs((yy - a) * np.cos(th) - (xx - b) * np.sin(th)) < width / 2
    return m


def test_skeleton_speed_512() -> None:
    for mask, budget in ((vessel_like(512), 0.5), (np.ones((512, 512), bool), 1.0)):
        t0 = time.perf_counter()
        s = M.skeletonize(mask)
        assert time.perf_counter() - t0 < budget
        assert s.any()


# ---------------------------------------------------------------------------- clDice
GH = 'guo_hall'  # the hand-derived skeletons below are Guo-Hall's


def test_cldice_half_covered_line() -> None:
    gt = line_3px()  # skeleton: row 5, cols 3..11 (9 px)
    pred = np.zeros_like(gt)
    pred[4:7, 2:8] = True  # left half of the line, cols 2..7
    # Tprec = |skel(pred) & gt| / |skel(pred)| = 1 (pred inside gt)
    # Tsens = |skel(gt) & pred| / |skel(gt)| = cols 3..7 of 3..11 = 5 / 9
    # clDice = 2 * 1 * 5/9 / (1 + 5/9) = 5/7
    counts = M.cldice_counts(pred, gt, skeleton=GH)
    assert counts[0] == counts[1] > 0 and counts[2:].tolist() == [5, 9]
    assert M.cldice(pred, gt, skeleton=GH) == pytest.approx(5 / 7)
    assert M.cldice(gt, gt, skeleton=GH) == 1.0
    # from probabilities, with a threshold
    prob = np.where(pred, 0.9, np.where(gt, 0.3, 0.0)).astype(np.float32)
    assert M.cldice(prob, gt, 0.5, skeleton=GH) == pytest.approx(5 / 7)
    assert M.cldice(prob, gt, 0.25, skeleton=GH) == 1.0
    # FOV that keeps only the left half: both skeletonised inside it
    fov = np.zeros_like(gt)
    fov[:, :8] = True
    assert M.cldice(pred, gt, fov=fov, skeleton=GH) == 1.0


def test_cldice_wide_prediction() -> None:
    gt = line_3px()
    pred = np.zeros_like(gt)
    pred[4:7, :] = True  # the line extended to both borders
    # skel(gt) inside pred -> Tsens 1; skel(pred) = row 5, cols 1..13, of which cols 2..12 are
    # in gt -> Tprec 11/13; clDice = 2 * 11/13 / (1 + 11/13) = 22/24
    assert M.cldice_counts(pred, gt, skeleton=GH).tolist() == [11, 13, 9, 9]
    assert M.cldice(pred, gt, skeleton=GH) == pytest.approx(22 / 24)


# ------------------------------------------------------------------------------- AUC
def test_auc_textbook_example() -> None:
    gt = np.array([0, 0, 1, 1], bool)
    prob = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35,0.1) win, (0.35,0.4) lose, (0.8, both) win -> 3/4
    assert M.roc_auc(prob, gt) == pytest.approx(0.75)
    # ranking 0.8(+), 0.4(-), 0.35(+), 0.1(-): AP = 0.5 * 1 + 0.5 * 2/3
    assert M.average_precision(prob, gt) == pytest.approx(0.5 + 1 / 3)


def mann_whitney_auc(p: np.ndarray, g: np.ndarray) -> float:
    diff = p[g][:, None] - p[~g][None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def brute_force_ap(p: np.ndarray, g: np.ndarray) -> float:
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(p)[::-1]:
        hit = p >= t
        tp = np.count_nonzero(hit & g)
        recall = tp / g.sum()
        ap += (recall - prev_recall) * tp / hit.sum()
        prev_recall = recall
    return ap


def test_auc_matches_pairwise_definition_with_ties_and_fov() -> None:
    rng = np.random.default_rng(1)
    prob = np.round(rng.random((30, 40)), 1)  # heavy ties
    gt = rng.random((30, 40)) < 0.2 + 0.6 * prob
    fov = rng.random((30, 40)) < 0.7
    p, g = prob[fov], gt[fov]
    assert M.roc_auc(prob, gt, fov) == pytest.approx(mann_whitney_auc(p, g), abs=1e-12)
    assert M.average_precision(prob, gt, fov) == pytest.approx(brute_force_ap(p, g), abs=1e-12)
    # the grouped-counts path (used for pooling) agrees when groups are the distinct scores
    _, inverse = np.unique(p, return_inverse=True)
    groups = (
        np.bincount(inverse[g], minlength=inverse.max() + 1),
        np.bincount(inverse[~g], minlength=inverse.max() + 1),
    )
    np.testing.assert_allclose(
        M.auc_from_ranked_counts(*groups), (mann_whitney_auc(p, g), brute_force_ap(p, g)), atol=1e-12
    )
    # without the FOV the answer differs, with the full-image reference
    assert M.roc_auc(prob, gt) == pytest.approx(mann_whitney_auc(prob.ravel(), gt.ravel()))


def test_auc_extremes() -> None:
    gt = np.array([0, 0, 1, 1], bool)
    assert M.roc_auc(np.array([0.1, 0.2, 0.8, 0.9]), gt) == 1.0
    assert M.roc_auc(np.array([0.9, 0.8, 0.2, 0.1]), gt) == 0.0
    assert M.roc_auc(np.full(4, 0.3), gt) == 0.5
    assert M.average_precision(np.full(4, 0.3), gt) == 0.5  # precision 2/4 at recall 1


def test_pooled_histogram_auc_close_to_exact() -> None:
    rng = np.random.default_rng(2)
    images = []
    for _ in range(3):
        g = rng.random((64, 64)) < 0.15
        logits = rng.normal(0, 3, (64, 64)) + 4 * g - 2
        images.append((1 / (1 + np.exp(-logits)), g))
    pos = sum(M.probability_histograms(p, g)[0] for p, g in images)
    neg = sum(M.probability_histograms(p, g)[1] for p, g in images)
    roc, ap = M.auc_from_ranked_counts(pos, neg)
    p_all = np.concatenate([p.ravel() for p, _ in images])
    g_all = np.concatenate([g.ravel() for _, g in images])
    assert roc == pytest.approx(M.roc_auc(p_all, g_all), abs=2e-3)
    assert ap == pytest.approx(M.average_precision(p_all, g_all), abs=2e-3)


# ---------------------------------------------------------------------------- sweep
def test_sweep_finds_known_best_threshold() -> None:
    # positives score 0.67, 100 "hard" negatives 0.62, 800 easy negatives 0.10:
    # t <= 0.10: FP 900; 0.15..0.60: FP 100 -> Dice 2/3; 0.65: perfect; >= 0.70: TP 0.
    prob = np.full(1000, 0.10, np.float32)
    gt = np.zeros(1000, bool)
    gt[:100] = True
    prob[:100] = 0.67
    prob[100:200] = 0.62
    sweep = M.threshold_sweep(prob.reshape(25, 40), gt.reshape(25, 40))
    t = sweep['thresholds']
    np.testing.assert_allclose(t, np.arange(1, 20) * 0.05)
    assert sweep['best_threshold'] == 0.65 and sweep['best_dice'] == 1.0
    dice = sweep['dice']
    assert dice[t.tolist().index(0.5)] == pytest.approx(2 / 3)
    assert dice[t.tolist().index(0.1)] == pytest.approx(200 / 1100)
    assert (dice[t >= 0.7] == 0).all()


def test_sweep_counts_equal_direct_thresholding() -> None:
    # values exactly on sweep thresholds (in float32) must land as in confusion_counts
    rng = np.random.default_rng(3)
    prob = rng.choice(np.concatenate([M.SWEEP_THRESHOLDS, rng.random(50)]), size=(40, 40)).astype(np.float32)
    gt = rng.random((40, 40)) < 0.4
    fov = rng.random((40, 40)) < 0.8
    counts = M.threshold_sweep_counts(prob, gt, fov)
    for i, t in enumerate(M.SWEEP_THRESHOLDS):
        assert counts[i].tolist() == M.confusion_counts(prob, gt, t, fov).tolist()


def test_best_threshold_tie_break() -> None:
    assert M.best_threshold([0.1, 0.3, 0.6, 0.9], [0.8, 0.8, 0.8, 0.2]) == (0.6, 0.8)
    assert M.best_threshold([0.4, 0.6], [0.5, 0.5]) == (0.4, 0.5)
    t, d = M.best_threshold([0.1, 0.2], [np.nan, np.nan])
    assert np.isnan(t) and np.isnan(d)


# ------------------------------------------------------------------ thresholded input
def test_thresholded_input_raises_unless_allowed() -> None:
    prob, gt = two_squares()
    hard_float = (prob >= 0.5).astype(np.float32)
    hard_bool = prob >= 0.5
    for fn in (
        M.roc_auc,
        M.average_precision,
        M.threshold_sweep,
        M.threshold_sweep_counts,
        M.probability_histograms,
        M.image_summary,
    ):
        for hard in (hard_float, hard_bool):
            with pytest.raises(ValueError, match='thresholded|boolean'):
                fn(hard, gt)
        fn(hard_float, gt, allow_binary=True)  # on purpose: fine
    # with allow_binary, the ROC AUC of a hard mask is that of its single operating point
    assert M.roc_auc(hard_float, gt, allow_binary=True) == pytest.approx((0.5 + 250 / 300) / 2)
    # thresholding a hard prediction is still fine
    assert M.confusion_counts(hard_float, gt).tolist() == [50, 50, 50, 250]


def test_logits_and_bad_masks_raise() -> None:
    prob, gt = two_squares()
    with pytest.raises(ValueError, match='logits'):
        M.roc_auc(prob * 10 - 5, gt)
    with pytest.raises(ValueError, match='logits'):
        M.confusion_counts(prob * 10 - 5, gt)
    with pytest.raises(ValueError, match='shape'):
        M.confusion_counts(prob, gt[:10])
    with pytest.raises(ValueError, match='gt'):
        M.confusion_counts(prob, gt * 2.0)


def test_image_summary_consistent() -> None:
    prob, gt = two_squares()
    prob = prob + np.linspace(0, 0.1, 400, dtype=np.float32).reshape(20, 20)  # not binary
    fov = np.ones((20, 20), bool)
    fov[18:] = False
    s = M.image_summary(prob, gt, fov)
    assert s['counts'].tolist() == M.confusion_counts(prob, gt, 0.5, fov).tolist()
    np.testing.assert_array_equal(s['sweep_counts'], M.threshold_sweep_counts(prob, gt, fov))
    assert s['roc_auc'] == M.roc_auc(prob, gt, fov)
    assert s['pr_auc'] == M.average_precision(prob, gt, fov)
    assert s['cldice'] == M.cldice(prob, gt, 0.5, fov)
    assert s['pos_hist'].sum() == 100 and s['neg_hist'].sum() == 260

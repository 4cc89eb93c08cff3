"""Per-width Dice/clDice of the recipe comparison (evaluation/width_metrics.py)."""

import numpy as np

from projects.sa2va_vessel.datasets.synthetic import make_vessel_sample
from projects.sa2va_vessel.evaluation.width_metrics import per_width_counts, scores_from_counts, width_regions


def _scores(prob, s):
    return {k: scores_from_counts(v) for k, v in per_width_counts(prob, s.width_map, s.fov).items()}


def test_width_map_is_the_mask_and_bins_split_by_width() -> None:
    s = make_vessel_sample(1, 512, with_width_map=True)
    assert np.array_equal(s.width_map > 0, s.mask)
    assert set(np.unique(s.width_map[s.mask])) <= set(range(1, 9)) and (s.width_map == 1).any()
    regions = width_regions(s.width_map)
    assert not (regions['1 px'] & (s.width_map >= 5)).any()  # no thick-vessel pixel in the thin bin
    assert (regions['1 px'] & (s.width_map == 1)).sum() == (s.width_map == 1).sum()


def test_missing_thin_vessels_only_hurts_the_thin_bins() -> None:
    s = make_vessel_sample(1, 512, with_width_map=True)
    perfect = _scores(s.mask.astype(np.float32), s)
    assert all(v['dice'] == 1.0 and v['cldice'] == 1.0 for v in perfect.values())
    thick_only = _scores((s.width_map >= 3).astype(np.float32), s)
    assert thick_only['1 px']['dice'] == 0.0 and thick_only['2 px']['dice'] == 0.0
    assert thick_only['5+ px']['dice'] > 0.95 and thick_only['3-4 px']['dice'] > 0.9
    # a 1 px halo of false positives around the thin vessels lowers their Dice only
    from projects.sa2va_vessel.evaluation.width_metrics import dilate

    halo = _scores((s.mask | dilate(s.width_map == 1, 1)).astype(np.float32), s)
    assert halo['1 px']['dice'] < 0.7 and halo['5+ px']['dice'] > 0.99  # (halo pixels near a junction)

"""Metrics over time: per-frame and per-sequence Dice, temporal consistency."""

from __future__ import annotations

import numpy as np
import pytest

from projects.sa2va_vessel.evaluation.video_metrics import dice, sequence_metrics, summarise, temporal_consistency


def test_dice_and_consistency() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert temporal_consistency([a, a, b]) == pytest.approx((1.0 + 0.5) / 2)
    assert temporal_consistency([a, None, b]) is None


def test_sequence_metrics_skip_unlabelled_frames() -> None:
    gt = np.zeros((4, 4), bool)
    gt[:2] = True
    probs = np.stack([gt * 0.9, gt * 0.9, np.roll(gt, 1, axis=0) * 0.9]).astype(np.float32)
    m = sequence_metrics(probs, [gt, None, gt], threshold=0.5)
    assert m['frame_dice'][1] is None and m['frame_dice'][0] == 1.0 and m['frame_dice'][2] == pytest.approx(0.5)
    assert m['mean_frame_dice'] == pytest.approx(0.75)
    assert m['sequence_dice'] == pytest.approx(2 * (8 + 4) / (16 + 16))
    assert m['temporal_consistency_pred'] == pytest.approx((1.0 + 0.5) / 2)
    assert m['temporal_consistency_gt'] is None  # no consecutive labelled pair
    s = summarise({'v': m})
    assert s['n_labelled_frames'] == 2 and s['mean_sequence_dice'] == pytest.approx(m['sequence_dice'])
    with pytest.raises(ValueError):
        sequence_metrics(probs, [gt], 0.5)

"""Dice and clDice per vessel width, for synthetic sets whose width is known at every pixel.

A width bin's region is its ground-truth vessels dilated by ``margin`` px (a disk), without the
ground-truth pixels of the other bins: false positives next to a thin vessel count against the
thin bin, and a thick vessel's pixels never enter a thin bin's score. Pixels near two bins count
in both. clDice skeletonises the whole prediction and ground truth once (``metrics.skeletonize``)
and counts the skeleton pixels that fall in the region.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import metrics as M

# (label, lowest width, highest width) in pixels
DEFAULT_BINS: tuple[tuple[str, int, int], ...] = (('1 px', 1, 1), ('2 px', 2, 2), ('3-4 px', 3, 4), ('5+ px', 5, 255))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a disk of ``radius`` px (numpy shifts; no SciPy needed)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w]
    return out


def width_regions(
    width_map: np.ndarray, bins: Sequence[tuple[str, int, int]] = DEFAULT_BINS, margin: int = 2
) -> dict[str, np.ndarray]:
    """Region (bool (H, W)) of every width bin; see module docstring."""
    vessels = width_map > 0
    regions = {}
    for label, lo, hi in bins:
        own = (width_map >= lo) & (width_map <= hi)
        regions[label] = dilate(own, margin) & ~(vessels & ~own)
    return regions


def per_width_counts(
    prob: np.ndarray,
    width_map: np.ndarray,
    fov: np.ndarray | None = None,
    threshold: float = 0.5,
    bins: Sequence[tuple[str, int, int]] = DEFAULT_BINS,
    margin: int = 2,
) -> dict[str, np.ndarray]:
    """Per bin: ``[tp, fp, fn, |S_p & G|, |S_p|, |S_g & P|, |S_g|]`` in its region (summable)."""
    if prob.shape != width_map.shape:
        raise ValueError(f'prob {prob.shape} and width map {width_map.shape} differ in shape')
    inside = np.ones(prob.shape, bool) if fov is None else np.asarray(fov, bool)
    pred = (prob >= threshold) & inside
    gt = (width_map > 0) & inside
    sp, sg = M.skeletonize(pred), M.skeletonize(gt)
    out = {}
    for label, region in width_regions(width_map, bins, margin).items():
        r = region & inside
        out[label] = np.array(
            [
                np.count_nonzero(pred & gt & r),
                np.count_nonzero(pred & ~gt & r),
                np.count_nonzero(~pred & gt & r),
                np.count_nonzero(sp & gt & r),
                np.count_nonzero(sp & r),
                np.count_nonzero(sg & pred & r),
                np.count_nonzero(sg & r),
            ],
            dtype=np.int64,
        )
    return out


def scores_from_counts(counts: np.ndarray) -> dict[str, float]:
    """Dice and clDice (and the vessel pixel count) from summed ``per_width_counts``."""
    tp, fp, fn = (int(v) for v in counts[:3])
    dice = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float('nan')
    return {'dice': dice, 'cldice': M.cldice_from_counts(counts[3:]), 'gt_pixels': tp + fn}

"""Boundary metrics of one 2-D binary prediction: HD95 and NSD (surface Dice), in pixels.

Definitions (MONAI's ``compute_hausdorff_distance(percentile=95)`` and
``compute_surface_dice`` conventions, pixel spacing 1):

* The surface of a mask is its pixels with a 4-neighbour outside it
  (``mask & ~binary_erosion(mask, cross)``, the image border counting as outside). With a FOV,
  prediction and ground truth are first cut to it.
* ``d_p``: for every surface pixel of the prediction, the Euclidean distance to the nearest
  ground-truth surface pixel; ``d_g`` the other way round.
* HD95 = max(95th percentile of d_p, 95th percentile of d_g) (``np.percentile``, linear).
* NSD at tolerance tau = (#{d_p <= tau} + #{d_g <= tau}) / (#d_p + #d_g).

Empty masks: both empty -> HD95 0 and NSD 1; exactly one empty -> HD95 = the image diagonal
(the largest distance possible, so a missed image is penalised rather than skipped) and NSD 0.

Distances are exact Euclidean nearest-neighbour distances between surface pixels, found with
``scipy.spatial.cKDTree``: the same numbers as ``scipy.ndimage.distance_transform_edt`` read at
the surface pixels (the tests check this), but the work grows with the surface pixels, not the
image area (measured here on a 1024 px vessel mask: 0.2 s with two EDTs' 0.7 s).
"""

from __future__ import annotations

import numpy as np

DEFAULT_NSD_TOLERANCE: float = 2.0  # pixels; vessels are a few pixels wide


def _bool(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise ValueError(f'{name} must be boolean (or hold only 0/1)')
        mask = mask.astype(bool)
    if mask.ndim != 2:
        raise ValueError(f'{name} must be 2-D, got shape {mask.shape}')
    return mask


def mask_surface(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (or on the image border)."""
    from scipy.ndimage import binary_erosion

    mask = _bool(mask, 'mask')
    cross = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
    return mask & ~binary_erosion(mask, structure=cross, border_value=0)


def surface_distances(pred: np.ndarray, gt: np.ndarray, fov: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(d_p, d_g): distances of each prediction surface pixel to the ground-truth surface and
    of each ground-truth surface pixel to the prediction surface (empty when a mask is)."""
    from scipy.spatial import cKDTree

    p, g = _bool(pred, 'pred'), _bool(gt, 'gt')
    if p.shape != g.shape:
        raise ValueError(f'prediction shape {p.shape} != ground truth shape {g.shape}')
    if fov is not None:
        f = np.broadcast_to(_bool(fov, 'fov'), g.shape)
        p, g = p & f, g & f
    sp, sg = mask_surface(p), mask_surface(g)
    if not sp.any() or not sg.any():
        return np.zeros(0), np.zeros(0)
    pts_p, pts_g = np.argwhere(sp), np.argwhere(sg)
    d_p = cKDTree(pts_g).query(pts_p, k=1)[0]  # each prediction rim pixel to the nearest gt one
    d_g = cKDTree(pts_p).query(pts_g, k=1)[0]
    return np.asarray(d_p, dtype=np.float64), np.asarray(d_g, dtype=np.float64)


def surface_scores(
    pred: np.ndarray, gt: np.ndarray, fov: np.ndarray | None = None, tolerance: float = DEFAULT_NSD_TOLERANCE
) -> dict[str, float]:
    """``{'hd95': ..., 'nsd': ...}`` of one binary prediction (see the module docstring)."""
    p, g = _bool(pred, 'pred'), _bool(gt, 'gt')
    if fov is not None:
        f = np.broadcast_to(_bool(fov, 'fov'), g.shape)
        p, g = p & f, g & f
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return {'hd95': 0.0, 'nsd': 1.0}
    if has_p != has_g:
        return {'hd95': float(np.hypot(*g.shape)), 'nsd': 0.0}
    d_p, d_g = surface_distances(p, g)
    hd95 = max(float(np.percentile(d_p, 95)), float(np.percentile(d_g, 95)))
    nsd = float((np.count_nonzero(d_p <= tolerance) + np.count_nonzero(d_g <= tolerance)) / (d_p.size + d_g.size))
    return {'hd95': hd95, 'nsd': nsd}


def hd95(pred: np.ndarray, gt: np.ndarray, fov: np.ndarray | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels."""
    return surface_scores(pred, gt, fov)['hd95']


def nsd(
    pred: np.ndarray, gt: np.ndarray, fov: np.ndarray | None = None, tolerance: float = DEFAULT_NSD_TOLERANCE
) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance`` pixels."""
    return surface_scores(pred, gt, fov, tolerance)['nsd']

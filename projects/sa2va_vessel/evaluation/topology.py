"""Topology of one 2-D binary mask: Betti numbers and Betti errors.

Connectivity (the dual pair, so that beta0 - beta1 is the Euler number of the mask):

* beta0 = connected components of the foreground, **8-connected** (diagonal vessel pixels join);
* beta1 = holes = connected components of the background, **4-connected**, that lie inside the
  FOV without touching its edge: the background outside the FOV (and outside the image) is
  one "outside" region, so a region enclosed by vessels and the FOV rim is not a hole.

With a FOV, the mask is first cut to it. Betti error = |beta(pred) - beta(gt)| per image, on
the whole image (not on patches).
"""

from __future__ import annotations

import numpy as np


def betti_numbers(mask: np.ndarray, fov: np.ndarray | None = None) -> tuple[int, int]:
    """(beta0, beta1) of a 2-D binary mask inside ``fov`` (see the module docstring)."""
    from skimage.measure import label

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f'betti_numbers needs a 2-D mask, got shape {m.shape}')
    if fov is not None:
        m = m & np.broadcast_to(np.asarray(fov, dtype=bool), m.shape)
    beta0 = int(label(m, connectivity=2).max())
    # One pixel of background around the image joins every outside part into one component.
    background = np.pad(~m, 1, constant_values=True)
    beta1 = int(label(background, connectivity=1).max()) - 1
    return beta0, beta1


def betti_errors(pred: np.ndarray, gt: np.ndarray, fov: np.ndarray | None = None) -> dict[str, float]:
    """``betti0_error``/``betti1_error``: |beta_i(pred) - beta_i(gt)|, plus the four numbers."""
    p0, p1 = betti_numbers(pred, fov)
    g0, g1 = betti_numbers(gt, fov)
    return {
        'betti0_error': float(abs(p0 - g0)),
        'betti1_error': float(abs(p1 - g1)),
        'betti0_pred': float(p0),
        'betti1_pred': float(p1),
        'betti0_gt': float(g0),
        'betti1_gt': float(g1),
    }

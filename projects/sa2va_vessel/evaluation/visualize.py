"""Pictures of predictions and of the threshold curve, drawn with numpy + PIL only.

* ``error_map``: TP white, FP red, FN blue, TN black; outside the FOV a dark grey.
* ``overlay_panel``: image | ground truth | probability | errors, side by side, optionally
  scaled down (area averaging, so 1-px vessels stay visible as lighter lines).
* ``draw_curve``: the threshold sweep (pooled Dice, mean Dice, ...) as a small line chart with
  the operating and the best threshold marked (no matplotlib: it is not a dependency).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

TP_COLOUR = (255, 255, 255)
FP_COLOUR = (255, 40, 40)
FN_COLOUR = (40, 90, 255)
TN_COLOUR = (0, 0, 0)
OUT_OF_FOV = (48, 48, 48)
CURVE_COLOURS = {
    'global_dice': (31, 119, 180),
    'mean_dice': (255, 127, 14),
    'global_sens': (44, 160, 44),
    'global_precision': (214, 39, 40),
    'global_iou': (148, 103, 189),
}


def error_map(pred: np.ndarray, gt: np.ndarray, fov: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W, 3) uint8: TP white, FP red, FN blue, TN black; outside ``fov`` dark grey."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.shape != gt.shape:
        raise ValueError(f'pred shape {pred.shape} != gt shape {gt.shape}')
    out = np.zeros(gt.shape + (3,), np.uint8)
    out[pred & gt] = TP_COLOUR
    out[pred & ~gt] = FP_COLOUR
    out[~pred & gt] = FN_COLOUR
    if fov is not None:
        out[~np.asarray(fov, bool)] = OUT_OF_FOV
    return out


def probability_image(prob: np.ndarray) -> np.ndarray:
    """Probabilities as an (H, W, 3) uint8 grey image (0 black, 1 white)."""
    p = np.clip(np.asarray(prob, np.float64), 0.0, 1.0)
    grey = np.round(p * 255.0).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _to_rgb(image: Optional[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    if image is None:
        return np.full(shape + (3,), 96, np.uint8)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape[:2] != shape:
        image = np.asarray(Image.fromarray(image).resize(shape[::-1], Image.BILINEAR))
    return image[..., :3]


def overlay_panel(
    image: Optional[np.ndarray],
    gt: np.ndarray,
    prob: np.ndarray,
    threshold: float = 0.5,
    fov: Optional[np.ndarray] = None,
    max_side: Optional[int] = 512,
    gap: int = 4,
) -> np.ndarray:
    """image | ground truth | probability | errors (TP white, FP red, FN blue), (h, 4w+3gap, 3).

    Computed at full resolution, then each panel is scaled so its longer side is at most
    ``max_side`` with area averaging (thin vessels fade instead of vanishing).
    """
    gt = np.asarray(gt, bool)
    prob = np.asarray(prob, np.float32)
    shape = gt.shape
    panels = [
        _to_rgb(image, shape),
        error_map(gt, gt, fov),  # ground truth: white on black
        probability_image(prob),
        error_map(prob >= threshold, gt, fov),
    ]
    h, w = shape
    if max_side is not None and max(h, w) > max_side:
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        panels = [np.asarray(Image.fromarray(p).resize(size, Image.BOX)) for p in panels]
        h, w = size[1], size[0]
    out = np.full((h, 4 * w + 3 * gap, 3), 255, np.uint8)
    for i, p in enumerate(panels):
        out[:, i * (w + gap) : i * (w + gap) + w] = p
    return out


def draw_curve(
    curve: Mapping[str, Sequence[float]],
    series: Sequence[str] = ('global_dice', 'mean_dice'),
    threshold: Optional[float] = None,
    best_threshold: Optional[float] = None,
    size: tuple[int, int] = (480, 320),
    title: str = '',
) -> np.ndarray:
    """A line chart of ``curve[s]`` against ``curve['thresholds']`` (x and y in [0, 1]).

    Vertical lines: grey at ``threshold`` (operating point), green at ``best_threshold``.
    Returns (H, W, 3) uint8.
    """
    width, height = size
    left, right, top, bottom = 44, 12, 22, 30
    img = Image.new('RGB', (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    pw, ph = width - left - right, height - top - bottom

    def xy(x: float, y: float) -> tuple[float, float]:
        return left + x * pw, top + (1.0 - y) * ph

    for k in range(0, 11):  # grid and tick labels every 0.1
        v = k / 10
        gx, _ = xy(v, 0)
        _, gy = xy(0, v)
        draw.line([xy(0, v), xy(1, v)], fill=(230, 230, 230))
        draw.line([xy(v, 0), xy(v, 1)], fill=(230, 230, 230))
        if k % 2 == 0:
            draw.text((gx - 8, top + ph + 4), f'{v:.1f}', fill=(0, 0, 0))
            draw.text((4, gy - 5), f'{v:.1f}', fill=(0, 0, 0))
    draw.rectangle([xy(0, 1), xy(1, 0)], outline=(0, 0, 0))
    if threshold is not None:
        draw.line([xy(threshold, 0), xy(threshold, 1)], fill=(128, 128, 128), width=1)
    if best_threshold is not None and np.isfinite(best_threshold):
        draw.line([xy(best_threshold, 0), xy(best_threshold, 1)], fill=(0, 160, 0), width=1)
    t = np.asarray(curve['thresholds'], np.float64)
    legend_x = left + 6
    for name in series:
        if name not in curve:
            continue
        colour = CURVE_COLOURS.get(name, (0, 0, 0))
        y = np.asarray(curve[name], np.float64)
        pts = [xy(float(a), float(b)) for a, b in zip(t, y) if np.isfinite(b)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        draw.text((legend_x, 4), name, fill=colour)
        legend_x += 8 * len(name) + 12
    if title:
        draw.text((width - right - 7 * len(title), 4), title, fill=(0, 0, 0))
    draw.text((left + pw // 2 - 24, height - 12), 'threshold', fill=(0, 0, 0))
    return np.asarray(img)


def save_png(array: np.ndarray, path: str) -> None:
    """Write an (H, W[, 3]) uint8/uint16 array as PNG."""
    Image.fromarray(np.ascontiguousarray(array)).save(path)

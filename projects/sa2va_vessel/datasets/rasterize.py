"""Vector and run-length annotations -> bool masks (polygons, rectangles, circles, COCO RLE).

Written from the published formats (no pycocotools): COCO RLE runs are column-major
(Fortran order), start with a run of zeros, and the compressed string form stores each
count in 5-bit chunks offset by 48, with a continuation bit 0x20, a sign bit 0x10 on the
last chunk, and counts after the second stored as differences to the count two before.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

Point = Tuple[float, float]


class DegenerateShapeError(ValueError):
    """A polygon/rectangle/circle encloses no area (too few points or collinear)."""


def polygon_area(points: Sequence[Point]) -> float:
    """Absolute shoelace area of a closed polygon."""
    if len(points) < 3:
        return 0.0
    xy = np.asarray(points, dtype=np.float64)
    x, y = xy[:, 0], xy[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0)


def enclosed_area(points: Sequence[Point]) -> float:
    """The area a closed polygon encloses, counting self-intersecting parts as positive.

    The shoelace sum is signed: the two lobes of a symmetric bow-tie cancel to 0. This is the
    integral of |winding number| instead, exact: between consecutive x-coordinates of the
    vertices and edge crossings no two edges cross, so each such slab is a stack of trapezoids
    whose winding number is the running sum of the edge directions.
    """
    if len(points) < 3:
        return 0.0
    xy = np.asarray(points, dtype=np.float64)
    p0, p1 = xy, np.roll(xy, -1, axis=0)
    keep = p0[:, 0] != p1[:, 0]  # vertical edges bound no slab area
    p0, p1 = p0[keep], p1[keep]
    if len(p0) < 2:
        return 0.0
    xs = [xy[:, 0]]
    d = p1 - p0
    for i in range(len(p0)):  # x of every proper crossing of edge i with a later edge
        q0, e = p0[i + 1 :], d[i + 1 :]
        denom = d[i, 0] * e[:, 1] - d[i, 1] * e[:, 0]
        ok = denom != 0
        diff = q0[ok] - p0[i]
        t = (diff[:, 0] * e[ok, 1] - diff[:, 1] * e[ok, 0]) / denom[ok]
        u = (diff[:, 0] * d[i, 1] - diff[:, 1] * d[i, 0]) / denom[ok]
        inside = (t > 0) & (t < 1) & (u > 0) & (u < 1)
        xs.append(p0[i, 0] + t[inside] * d[i, 0])
    cuts = np.unique(np.concatenate(xs))
    lo, hi = np.minimum(p0[:, 0], p1[:, 0]), np.maximum(p0[:, 0], p1[:, 0])
    direction = np.sign(d[:, 0])
    area = 0.0
    for a, b in zip(cuts[:-1], cuts[1:]):
        xm = 0.5 * (a + b)
        active = (lo < xm) & (xm < hi)
        if active.sum() < 2:
            continue
        y = p0[active, 1] + (xm - p0[active, 0]) * d[active, 1] / d[active, 0]
        order = np.argsort(y)
        winding = np.cumsum(direction[active][order])[:-1]
        area += float((b - a) * np.sum(np.abs(winding) * np.diff(y[order])))
    return area


def flat_to_points(flat: Sequence[float]) -> List[Point]:
    """COCO's flat [x1, y1, x2, y2, ...] -> [(x1, y1), ...]."""
    if len(flat) % 2:
        raise DegenerateShapeError(f'odd number of polygon coordinates ({len(flat)})')
    return [(float(flat[i]), float(flat[i + 1])) for i in range(0, len(flat), 2)]


def _canvas(hw: Tuple[int, int]) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new('L', (int(hw[1]), int(hw[0])), 0)
    return img, ImageDraw.Draw(img)


def polygon_mask(points: Sequence[Point], hw: Tuple[int, int]) -> np.ndarray:
    """Fill a polygon (pixel-centre coordinates, outline included) into an (H, W) mask.

    Degenerate (DegenerateShapeError): fewer than 3 points or no enclosed area. A
    self-intersecting polygon whose signed area cancels (a symmetric bow-tie) is not.
    """
    # the signed shoelace sum is the fast test; only when it is 0 is the exact area needed
    if len(points) < 3 or (polygon_area(points) <= 0.0 and enclosed_area(points) <= 0.0):
        raise DegenerateShapeError(f'polygon with {len(points)} point(s) and zero area')
    img, draw = _canvas(hw)
    draw.polygon([(float(x), float(y)) for x, y in points], fill=1, outline=1)
    return np.asarray(img).astype(bool)


def rectangle_mask(p0: Point, p1: Point, hw: Tuple[int, int]) -> np.ndarray:
    """Axis-aligned rectangle given by two opposite corners (either order)."""
    (x0, y0), (x1, y1) = p0, p1
    if x0 == x1 or y0 == y1:
        raise DegenerateShapeError(f'rectangle with zero width or height: {p0}, {p1}')
    img, draw = _canvas(hw)
    draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=1)
    return np.asarray(img).astype(bool)


def circle_mask(center: Point, on_circle: Point, hw: Tuple[int, int]) -> np.ndarray:
    """Disc given by its centre and one point on the circle (LabelMe's circle shape)."""
    r = float(np.hypot(on_circle[0] - center[0], on_circle[1] - center[1]))
    if r <= 0:
        raise DegenerateShapeError(f'circle with zero radius at {center}')
    h, w = int(hw[0]), int(hw[1])
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - center[0]) ** 2 + (yy - center[1]) ** 2 <= r * r


def rle_string_to_counts(s: str) -> List[int]:
    """Decode COCO's compressed RLE string into run lengths."""
    counts: List[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError('truncated RLE string')
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def counts_to_rle_string(counts: Sequence[int]) -> str:
    """Encode run lengths as COCO's compressed RLE string (inverse of rle_string_to_counts)."""
    out = []
    for i, c in enumerate(counts):
        x = int(c) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            chunk = x & 0x1F
            x >>= 5
            more = not ((x == 0 and not chunk & 0x10) or (x == -1 and chunk & 0x10))
            if more:
                chunk |= 0x20
            out.append(chr(chunk + 48))
    return ''.join(out)


def rle_decode(rle: Dict[str, object]) -> np.ndarray:
    """COCO RLE {'size': [H, W], 'counts': list or str} -> bool (H, W)."""
    try:
        h, w = (int(v) for v in rle['size'])  # type: ignore[union-attr]
        counts = rle['counts']
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"RLE needs 'size' [H, W] and 'counts' ({exc})") from None
    if isinstance(counts, bytes):
        counts = counts.decode('ascii')
    runs = rle_string_to_counts(counts) if isinstance(counts, str) else [int(c) for c in counts]  # type: ignore[union-attr]
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise ValueError(f'RLE run lengths sum to {sum(runs)} (some negative?), expected H*W = {h * w}')
    values = np.zeros(len(runs), dtype=bool)
    values[1::2] = True  # runs alternate, starting with background
    flat = np.repeat(values, runs)
    return flat.reshape((w, h)).T.copy()  # column-major


def rle_encode(mask: np.ndarray) -> Dict[str, object]:
    """bool (H, W) -> COCO RLE with uncompressed counts (for tests and writers)."""
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        runs = [0] + runs
    return {'size': [int(mask.shape[0]), int(mask.shape[1])], 'counts': [int(r) for r in runs]}


Segmentation = Union[Dict[str, object], Sequence[Sequence[float]]]


def segmentation_mask(seg: Segmentation, hw: Tuple[int, int]) -> np.ndarray:
    """A COCO/Sa2VA 'segmentation': list of flat polygons, or an RLE dict -> bool (H, W)."""
    if isinstance(seg, dict):
        m = rle_decode(seg)
        if m.shape != tuple(hw):
            raise ValueError(f'RLE size {m.shape} differs from the image size {tuple(hw)}')
        return m
    out = np.zeros(hw, dtype=bool)
    for flat in seg:
        out |= polygon_mask(flat_to_points(flat), hw)
    return out

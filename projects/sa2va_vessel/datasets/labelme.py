"""LabelMe JSON -> bool vessel mask, with every problem a named error or a counted skip.

Shapes as LabelMe defines them (``labelme/utils/shape.py`` semantics): ``polygon`` (filled,
outline included), ``rectangle`` (two opposite corners), ``circle`` (centre, a point on the
circle), ``line`` (two points) and ``linestrip`` (a polyline), both drawn ``line_width`` px
wide, and ``mask`` (a base64 PNG over the box of its two points). ``point`` encloses no area
and is an UnsupportedShapeError.

Coordinates are in the file's ``imageWidth`` x ``imageHeight`` frame. When that differs from
the real image (annotated on a resized copy, e.g. 800x800 for a 512x512 frame) every point is
scaled by (W / imageWidth, H / imageHeight) and the factor is reported in `scale`.

After rescaling, a vertex more than 1 px outside the image is ShapeOutsideImageError; a
polygon with fewer than 3 distinct points or all on one line, a zero rectangle, circle or line
is DegenerateShapeAnnotationError; a label outside `labels` (when given) and not in
`ignore_labels` is UnknownLabelError. ``on_error='fail'`` raises the first one, ``'skip'``
leaves the shape out and lists it in `problems`.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .annotation_errors import (
    AnnotationError,
    DegenerateShapeAnnotationError,
    ShapeOutsideImageError,
    UnknownLabelError,
    UnsupportedShapeError,
    load_json,
)
from .coco_masks import OUTSIDE_TOLERANCE, polygon_is_flat
from .rasterize import DegenerateShapeError, circle_mask, polygon_mask, rectangle_mask

ON_ERROR = ('fail', 'skip')


@dataclass
class LabelMeMask:
    """The union mask of a LabelMe file and what happened on the way."""

    mask: np.ndarray
    n_shapes: int = 0
    problems: List[AnnotationError] = field(default_factory=list)
    scale: Optional[Tuple[float, float]] = None  # (sx, sy) when the file's frame was rescaled
    annotated_wh: Tuple[int, int] = (0, 0)  # imageWidth, imageHeight of the file
    ignored: int = 0  # shapes with an ignored label
    labels: Counter = field(default_factory=Counter)


def labelme_header(doc: Any, path: str | Path) -> Tuple[int, int]:
    """(imageHeight, imageWidth) of a parsed LabelMe file."""
    if not isinstance(doc, dict) or not isinstance(doc.get('shapes'), list):
        raise AnnotationError(f"{path}: not a LabelMe file (no 'shapes' list)")
    try:
        return int(doc['imageHeight']), int(doc['imageWidth'])
    except (KeyError, TypeError, ValueError):
        raise AnnotationError(f'{path}: LabelMe file lacks imageWidth/imageHeight') from None


def _draw(hw: Tuple[int, int]) -> Tuple[Image.Image, ImageDraw.ImageDraw]:
    img = Image.new('L', (int(hw[1]), int(hw[0])), 0)
    return img, ImageDraw.Draw(img)


def _line_mask(pts: List[Tuple[float, float]], hw: Tuple[int, int], width: int) -> np.ndarray:
    img, draw = _draw(hw)
    draw.line(pts, fill=1, width=int(width), joint='curve')
    if width > 2:  # round caps, so a polyline's ends look like LabelMe's strokes
        r = width / 2.0
        for x, y in (pts[0], pts[-1]):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=1)
    return np.asarray(img).astype(bool)


def _mask_shape(shape: Dict[str, Any], ann_hw: Tuple[int, int], hw: Tuple[int, int]) -> np.ndarray:
    """LabelMe 'mask' shape: a PNG over the box from points[0] (annotation frame)."""
    patch = np.asarray(Image.open(io.BytesIO(base64.b64decode(shape['mask']))).convert('L')) > 0
    x0, y0 = (int(round(float(v))) for v in shape['points'][0])
    canvas = np.zeros(ann_hw, dtype=bool)
    region = canvas[max(y0, 0) : y0 + patch.shape[0], max(x0, 0) : x0 + patch.shape[1]]
    region |= patch[: region.shape[0], : region.shape[1]]
    if canvas.shape != tuple(hw):  # nearest keeps it binary
        canvas = (
            np.asarray(Image.fromarray(canvas.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.Resampling.NEAREST))
            > 127
        )
    return canvas


def _shape_mask(
    kind: str,
    pts: List[Tuple[float, float]],
    shape: Dict[str, Any],
    ann_hw: Tuple[int, int],
    hw: Tuple[int, int],
    line_width: int,
    where: str,
) -> np.ndarray:
    h, w = hw
    t = OUTSIDE_TOLERANCE
    xy = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    if len(xy) and (
        (xy[:, 0] < -t).any() or (xy[:, 0] > w + t).any() or (xy[:, 1] < -t).any() or (xy[:, 1] > h + t).any()
    ):
        raise ShapeOutsideImageError(
            f'{where}: reaches outside the {w}x{h} image '
            f'(x {xy[:, 0].min():.1f}..{xy[:, 0].max():.1f}, '
            f'y {xy[:, 1].min():.1f}..{xy[:, 1].max():.1f})'
        )
    distinct = len(np.unique(xy, axis=0)) if len(xy) else 0
    try:
        if kind == 'polygon':
            if distinct < 3 or polygon_is_flat(xy):
                raise DegenerateShapeError(f'polygon with {distinct} distinct point(s) or zero area')
            return polygon_mask(pts, hw)
        if kind == 'rectangle' and len(pts) == 2:
            return rectangle_mask(pts[0], pts[1], hw)
        if kind == 'circle' and len(pts) == 2:
            return circle_mask(pts[0], pts[1], hw)
        if kind in ('line', 'linestrip') and len(pts) >= 2:
            if distinct < 2:
                raise DegenerateShapeError(f'{kind} with one distinct point')
            return _line_mask(pts, hw, line_width)
        if kind == 'mask' and len(pts) == 2 and shape.get('mask'):
            return _mask_shape(shape, ann_hw, hw)
    except DegenerateShapeError as exc:
        raise DegenerateShapeAnnotationError(f'{where}: {exc}') from None
    except (ValueError, OSError) as exc:  # undecodable base64 / PNG of a mask shape
        raise AnnotationError(f'{where}: {exc}') from None
    raise UnsupportedShapeError(f'{where}: unsupported shape type or wrong number of points ({len(pts)})')


def rasterise_labelme(
    doc: Any,
    path: str | Path,
    image_hw: Optional[Tuple[int, int]] = None,
    labels: Optional[Iterable[str]] = None,
    ignore_labels: Iterable[str] = (),
    line_width: int = 3,
    on_error: str = 'fail',
) -> LabelMeMask:
    """Union of the vessel shapes of a parsed LabelMe document at the real image size `image_hw`."""
    if on_error not in ON_ERROR:
        raise ValueError(f'on_error must be one of {ON_ERROR}, got {on_error!r}')
    if line_width < 1:
        raise ValueError(f'line_width must be >= 1, got {line_width}')
    ann_h, ann_w = labelme_header(doc, path)
    if ann_h <= 0 or ann_w <= 0:
        raise AnnotationError(f'{path}: imageWidth/imageHeight must be positive, got {ann_w}x{ann_h}')
    h, w = image_hw if image_hw is not None else (ann_h, ann_w)
    sx, sy = w / ann_w, h / ann_h
    keep = None if labels is None else set(labels)
    ignore = set(ignore_labels)
    result = LabelMeMask(
        mask=np.zeros((h, w), dtype=bool),
        annotated_wh=(ann_w, ann_h),
        scale=None if (sx, sy) == (1.0, 1.0) else (sx, sy),
    )
    for i, shape in enumerate(doc['shapes']):
        label = shape.get('label') if isinstance(shape, dict) else None
        kind = (shape.get('shape_type') or 'polygon') if isinstance(shape, dict) else '?'
        where = f'{path}: shape {i} ({kind}, label {label!r})'
        try:
            if not isinstance(shape, dict):
                raise AnnotationError(f'{where}: a shape must be an object')
            if label in ignore:
                result.ignored += 1
                continue
            if keep is not None and label not in keep:
                raise UnknownLabelError(
                    f'{where}: label not in --labels {sorted(keep)} (add it to --labels or --ignore-labels)'
                )
            try:
                pts = [(float(x) * sx, float(y) * sy) for x, y in shape.get('points') or []]
            except (TypeError, ValueError):
                raise AnnotationError(f'{where}: points must be [x, y] pairs') from None
            m = _shape_mask(kind, pts, shape, (ann_h, ann_w), (h, w), line_width, where)
        except AnnotationError as exc:
            if on_error == 'fail':
                raise
            result.problems.append(exc)
            continue
        result.mask |= m
        result.n_shapes += 1
        result.labels[label] += 1
    return result


def read_labelme_file(path: str | Path, image_hw: Optional[Tuple[int, int]] = None, **kwargs: Any) -> LabelMeMask:
    """`rasterise_labelme` of the file at `path` (keyword arguments as there)."""
    return rasterise_labelme(load_json(path), path, image_hw, **kwargs)

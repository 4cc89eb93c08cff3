"""COCO instance files -> bool masks, rasterised by pycocotools.

Why pycocotools: ground truth must match what every other COCO/ARCADE user gets. Its polygon
fill differs from PIL's at the edges, and on 2-5 px vessels an edge pixel is 20-50% of the
width. The project's own RLE codec (rasterize.py) stays for writers and is tested against
pycocotools.

`CocoFile` indexes one instances file and rasterises one image at a time (an ARCADE split
held as masks at once would be ~1 GB). A segmentation may be a list of flat polygons, an
uncompressed RLE (``counts`` a list) or a compressed RLE (``counts`` a string).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from .annotation_errors import (
    AnnotationError,
    DegenerateShapeAnnotationError,
    ShapeOutsideImageError,
    UnknownLabelError,
    load_json,
)

try:  # a clear message beats an ImportError deep in a data run
    from pycocotools import mask as coco_mask
except ImportError as exc:  # pragma: no cover - pycocotools is in install_requires
    raise ImportError('pycocotools is needed for COCO/ARCADE masks: python3 -m pip install pycocotools') from exc

OUTSIDE_TOLERANCE = 1.0  # px: a vertex this far beyond the border counts as outside the image


def _decode(rle: Any) -> np.ndarray:
    # pycocotools 2.0.x warns about numpy 2's copy keyword on every decode; the result is right.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        return coco_mask.decode(rle)


def _check_polygon(flat: Any, hw: Tuple[int, int], where: str) -> List[float]:
    if not isinstance(flat, (list, tuple)) or len(flat) % 2 or not all(isinstance(v, (int, float)) for v in flat):
        raise DegenerateShapeAnnotationError(f'{where}: polygon must be a flat list of x, y numbers')
    xy = np.asarray(flat, dtype=np.float64).reshape(-1, 2)
    if len(np.unique(xy, axis=0)) < 3 or polygon_is_flat(xy):
        raise DegenerateShapeAnnotationError(f'{where}: polygon with fewer than 3 distinct points or zero area')
    h, w = hw
    t = OUTSIDE_TOLERANCE
    if (xy[:, 0] < -t).any() or (xy[:, 0] > w + t).any() or (xy[:, 1] < -t).any() or (xy[:, 1] > h + t).any():
        raise ShapeOutsideImageError(
            f'{where}: polygon reaches outside the {w}x{h} image '
            f'(x {xy[:, 0].min():.1f}..{xy[:, 0].max():.1f}, '
            f'y {xy[:, 1].min():.1f}..{xy[:, 1].max():.1f})'
        )
    return [float(v) for v in flat]


def polygon_is_flat(xy: np.ndarray) -> bool:
    """True when every point lies on one line (zero enclosed area; a bow-tie is not flat)."""
    centred = xy - xy.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False)
    return bool(s[-1] <= 1e-9 * max(float(s[0]), 1.0))


def segmentation_to_mask(seg: Any, hw: Tuple[int, int], where: str = 'segmentation') -> np.ndarray:
    """A COCO segmentation (polygons, or RLE compressed/uncompressed) -> bool (H, W) via pycocotools."""
    h, w = int(hw[0]), int(hw[1])
    if isinstance(seg, dict):
        try:
            size = [int(v) for v in seg['size']]
            counts = seg['counts']
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(f"{where}: RLE needs 'size' [H, W] and 'counts'") from None
        if size != [h, w]:
            raise AnnotationError(f'{where}: RLE size {size} differs from the image size [{h}, {w}]')
        if isinstance(counts, list):
            if any(not isinstance(c, int) or c < 0 for c in counts) or sum(counts) != h * w:
                raise AnnotationError(f'{where}: uncompressed RLE counts must be non-negative and sum to H*W={h * w}')
            rle = coco_mask.frPyObjects({'size': size, 'counts': counts}, h, w)
        elif isinstance(counts, (str, bytes)):
            rle = {'size': size, 'counts': counts.encode('ascii') if isinstance(counts, str) else counts}
        else:
            raise AnnotationError(f'{where}: RLE counts must be a list or a string')
        try:
            m = _decode(rle)
        except Exception as exc:  # pycocotools raises plain errors on corrupt strings
            raise AnnotationError(f'{where}: cannot decode RLE ({exc})') from None
        if m.shape != (h, w):
            raise AnnotationError(f'{where}: RLE decodes to {m.shape}, expected {(h, w)}')
        return m.astype(bool)
    if not isinstance(seg, list) or not seg:
        raise DegenerateShapeAnnotationError(f'{where}: empty or unknown segmentation')
    polys = [_check_polygon(p, (h, w), f'{where}: polygon {j}') for j, p in enumerate(seg)]
    return _decode(coco_mask.merge(coco_mask.frPyObjects(polys, h, w))).astype(bool)


@dataclass
class CocoImageMask:
    """One image's mask: the union of the kept annotations, per category, and what was skipped."""

    mask: np.ndarray
    by_category: Dict[str, np.ndarray] = field(default_factory=dict)
    n_shapes: int = 0
    problems: List[AnnotationError] = field(default_factory=list)


class CocoFile:
    """An indexed COCO instances file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        doc = load_json(self.path)
        if not isinstance(doc, dict) or 'images' not in doc or 'annotations' not in doc:
            raise AnnotationError(f"{self.path}: not a COCO file (needs 'images' and 'annotations')")
        self.categories: Dict[int, str] = {int(c['id']): str(c.get('name', c['id'])) for c in doc.get('categories', [])}
        self.images: Dict[int, Dict[str, Any]] = {}
        for im in doc['images']:
            try:
                self.images[int(im['id'])] = {
                    'file_name': str(im['file_name']),
                    'height': int(im['height']),
                    'width': int(im['width']),
                    'id': int(im['id']),
                }
            except (KeyError, TypeError, ValueError):
                raise AnnotationError(f'{self.path}: image entry {im!r} lacks id/file_name/width/height') from None
        self.annotations: Dict[int, List[Tuple[int, Dict[str, Any]]]] = defaultdict(list)
        for i, ann in enumerate(doc['annotations']):
            image_id = ann.get('image_id')
            if image_id not in self.images:
                raise AnnotationError(f'{self.path}: annotation {i} refers to unknown image_id {image_id!r}')
            self.annotations[int(image_id)].append((i, ann))

    def check_categories(self, names: Optional[Iterable[str]]) -> Optional[set]:
        """The asked category names as a set, every one of them present in the file."""
        if names is None:
            return None
        names = set(names)
        unknown = sorted(names - set(self.categories.values()))
        if unknown:
            raise UnknownLabelError(
                f'{self.path}: categories {unknown} not in the file; it has '
                f'{sorted(set(self.categories.values()), key=str)}'
            )
        return names

    def image_mask(
        self, image_id: int, categories: Optional[set] = None, per_category: bool = False, on_error: str = 'fail'
    ) -> CocoImageMask:
        """Rasterise one image's annotations (those of `categories`, default all)."""
        im = self.images[image_id]
        hw = (im['height'], im['width'])
        out = CocoImageMask(mask=np.zeros(hw, dtype=bool))
        for i, ann in self.annotations.get(image_id, []):
            where = f'{self.path}: annotation {i} (image {im["file_name"]})'
            try:
                cat = self.categories.get(ann.get('category_id'))
                if cat is None:
                    raise UnknownLabelError(f'{where}: unknown category_id {ann.get("category_id")!r}')
                if categories is not None and cat not in categories:
                    continue
                if 'segmentation' not in ann:
                    raise DegenerateShapeAnnotationError(f"{where}: no 'segmentation'")
                m = segmentation_to_mask(ann['segmentation'], hw, where)
            except AnnotationError as exc:
                if on_error == 'fail':
                    raise
                out.problems.append(exc)
                continue
            out.mask |= m
            out.n_shapes += 1
            if per_category:
                if cat in out.by_category:
                    out.by_category[cat] |= m
                else:
                    out.by_category[cat] = m.copy()
        return out

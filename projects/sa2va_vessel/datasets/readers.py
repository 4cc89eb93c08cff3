"""Reading images, masks and FOV masks from files into plain numpy arrays.

Rules (one place, so every reader agrees):
- images -> uint8 RGB (H, W, 3). 16-bit grey/RGB is scaled to 8 bits by its dtype range
  (v / 257, rounded); palette and grey images are expanded to RGB; alpha is dropped.
- masks/FOV -> bool (H, W), the binarisation rule:
  * 1-bit images: as stored;
  * palette images: converted to grey through the palette first (DRIVE/STARE GIF masks
    store black/white palette entries);
  * colour images: the maximum over the channels (any coloured label counts);
  * then, if every value is 0 or 1 (a label map), value 1 is vessel; otherwise a pixel is
    vessel when it is above half of the dtype range: > 127 for 8-bit, > 32767 for 16-bit.
Annotation files (LabelMe JSON, COCO instances, Sa2VA annotations.json) are rasterised
to the same bool masks (see rasterize.py). Every failure raises DataReadError naming the
file; annotation readers can instead skip bad shapes (strict=False) and list them.

Images above PIL's pixel limit (`PIL.Image.MAX_IMAGE_PIXELS`, ~89 M pixels) raise
ImageTooLargeError (a DataReadError) unless the reader is called with `allow_large=True`.
What a mask *holds* (empty, inverted, vessels in the alpha channel, ...) is judged by
mask_validation.py on the raw values of `read_mask_raw`.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from .rasterize import DegenerateShapeError, segmentation_mask

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp', '.gif', '.ppm', '.ppm.gz')


class DataReadError(ValueError):
    """A data file could not be read or does not hold what it should."""


class ImageTooLargeError(DataReadError):
    """An image has more pixels than PIL's decompression-bomb limit and was not allowed."""


def _too_large(path: str | Path, pixels: Optional[int], detail: str = '') -> ImageTooLargeError:
    size = f'{pixels} pixels' if pixels is not None else detail
    return ImageTooLargeError(
        f"{path}: image too large ({size}, above PIL's limit Image.MAX_IMAGE_PIXELS = "
        f'{Image.MAX_IMAGE_PIXELS}); if the file is trusted, allow it with --allow-large-images '
        f'(allow_large_images=True)'
    )


def _open_header(path: str | Path, allow_large: bool = False) -> Image.Image:
    """Open an image lazily (header only), enforcing the pixel limit with a named error."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # PIL warns between 1x and 2x its limit and raises above; we raise our own error instead.
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            if allow_large:
                Image.MAX_IMAGE_PIXELS = None  # PIL's only switch for its bomb check
            try:
                if str(path).lower().endswith('.gz'):  # STARE ships gzipped PPMs
                    import gzip

                    img = Image.open(io.BytesIO(gzip.decompress(Path(path).read_bytes())))
                else:
                    img = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except Image.DecompressionBombError as exc:
        raise _too_large(path, None, str(exc).split(' exceeds')[0]) from None
    except FileNotFoundError:
        raise DataReadError(f'{path}: file not found') from None
    except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as exc:
        raise DataReadError(f'{path}: cannot read image ({exc})') from exc
    pixels = img.size[0] * img.size[1]
    if not allow_large and limit is not None and pixels > limit:
        raise _too_large(path, pixels)
    return img


def _open(path: str | Path, allow_large: bool = False) -> Image.Image:
    img = _open_header(path, allow_large)
    try:
        img.load()
    except (OSError, SyntaxError, EOFError, ValueError) as exc:
        raise DataReadError(f'{path}: cannot read image ({exc})') from exc
    return img


def image_size(path: str | Path, allow_large: bool = False) -> Tuple[int, int]:
    """(W, H) from the file header alone (no pixel decoding); DataReadError when unreadable."""
    with _open_header(path, allow_large) as img:
        return img.size


def _to_array(img: Image.Image, path: str | Path) -> np.ndarray:
    """The pixel values with their real bit depth (PIL's 'I;16' and 'I' modes kept wide)."""
    if img.mode == 'P':
        # Palette indices mean nothing by themselves; the palette colours do.
        img = img.convert('RGBA' if 'transparency' in img.info else 'RGB')
    if img.mode in ('I;16', 'I;16B', 'I;16L', 'I;16N'):
        return np.asarray(img).astype(np.uint16)
    if img.mode == 'I':
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataReadError(f'{path}: 32-bit integer image with values outside 0..65535')
        return arr.astype(np.uint16)
    if img.mode == 'F':
        raise DataReadError(f'{path}: floating-point images are not supported')
    if img.mode in ('1', 'L', 'RGB', 'RGBA', 'LA'):
        return np.asarray(img)
    return np.asarray(img.convert('RGB'))


def read_image(path: str | Path, allow_large: bool = False) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3)."""
    img = _open(path, allow_large)
    arr = _to_array(img, path)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        # 16-bit -> 8-bit by the dtype range, not the image maximum, so brightness is kept.
        arr = np.round(arr.astype(np.float32) / 257.0).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 2:  # LA
        arr = np.repeat(arr[..., :1], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[..., :3]
    return np.ascontiguousarray(arr, dtype=np.uint8)


def binarise(values: np.ndarray, source: str | Path = '<array>') -> np.ndarray:
    """Apply the mask binarisation rule of this module to a grey or colour array."""
    if values.dtype == bool:
        return values.copy()
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.ndim != 2:
        raise DataReadError(f'{source}: mask must be 2-D, got shape {values.shape}')
    vmax = int(values.max()) if values.size else 0
    if vmax <= 1:
        return values == 1  # a 0/1 label map
    if values.dtype == np.uint8:
        return values > 127
    if values.dtype == np.uint16:
        return values > 32767
    raise DataReadError(f'{source}: unsupported mask dtype {values.dtype}')


def read_mask_raw(path: str | Path, allow_large: bool = False) -> np.ndarray:
    """A mask file's values before binarisation: palette images as their colours, 1-bit as
    bool, 16-bit kept as uint16, alpha kept (L, LA, RGB or RGBA layout: (H, W[, C]))."""
    return _to_array(_open(path, allow_large), path)


def mask_from_raw(raw: np.ndarray, source: str | Path = '<array>') -> np.ndarray:
    """The binarisation rule on `read_mask_raw` values: alpha dropped, then `binarise`."""
    if raw.ndim == 3 and raw.shape[2] in (2, 4):
        raw = raw[..., :-1]  # drop alpha
    return binarise(raw, source)


def read_mask(path: str | Path, allow_large: bool = False) -> np.ndarray:
    """A mask (or FOV) file as bool (H, W) by the binarisation rule above (no content checks;
    see mask_validation.read_checked_mask for those)."""
    return mask_from_raw(read_mask_raw(path, allow_large), path)


# ---------------------------------------------------------------------------------------------
# Annotation files (vector / RLE) -> bool masks
# ---------------------------------------------------------------------------------------------


@dataclass
class AnnotationMask:
    """A mask rasterised from an annotation file, and what was left out on the way."""

    mask: np.ndarray
    n_shapes: int = 0
    skipped: List[str] = field(default_factory=list)  # 'file: shape i: reason' lines


def _load_json(path: str | Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding='utf-8'))
    except FileNotFoundError:
        raise DataReadError(f'{path}: file not found') from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataReadError(f'{path}: invalid JSON ({exc})') from exc


def _problem(strict: bool, result: AnnotationMask, message: str) -> None:
    """Strict mode raises; lenient mode records the skipped shape."""
    if strict:
        raise DataReadError(message)
    result.skipped.append(message)


def read_labelme(
    path: str | Path,
    image_hw: Optional[Tuple[int, int]] = None,
    labels: Optional[Iterable[str]] = None,
    strict: bool = True,
) -> AnnotationMask:
    """Union of the LabelMe shapes of `path` as a bool mask (shapes of other labels left out).

    The shapes, the rescaling from the file's imageWidth x imageHeight to `image_hw` (H, W) and
    the named errors are those of labelme.py. Strict mode raises the first problem; otherwise
    bad shapes are skipped and listed in `skipped`.
    """
    from .labelme import labelme_header, rasterise_labelme  # late: labelme.py imports this module

    doc = _load_json(path)
    labelme_header(doc, path)
    ignore: set = set()
    if labels is not None:  # this reader's contract: other labels are simply not vessel
        ignore = {s.get('label') for s in doc['shapes'] if isinstance(s, dict)} - set(labels)
    res = rasterise_labelme(
        doc, path, image_hw, labels=labels, ignore_labels=ignore, on_error='fail' if strict else 'skip'
    )
    return AnnotationMask(mask=res.mask, n_shapes=res.n_shapes, skipped=[str(e) for e in res.problems])


def read_coco(
    path: str | Path, categories: Optional[Iterable[str]] = None, strict: bool = True
) -> Dict[str, AnnotationMask]:
    """COCO instances file -> {image file_name: union mask of its (filtered) annotations}.

    Rasterised by pycocotools (coco_masks.py): polygons and RLE, compressed or not;
    `categories` keeps only those category names. Images without kept annotations get an
    empty mask. Holds every mask in memory: for large sets iterate coco_masks.CocoFile.
    """
    from .coco_masks import CocoFile  # late: coco_masks.py imports this module

    coco = CocoFile(path)
    keep = None if categories is None else set(categories)
    out: Dict[str, AnnotationMask] = {}
    for image_id, im in coco.images.items():
        res = coco.image_mask(image_id, keep, on_error='fail' if strict else 'skip')
        out[im['file_name']] = AnnotationMask(
            mask=res.mask, n_shapes=res.n_shapes, skipped=[str(e) for e in res.problems]
        )
    return out


@dataclass
class Sa2VARecord:
    """One entry of a Sa2VA fine-tuning annotations.json."""

    image: str
    masks: List[Any]  # per object: list of flat polygons (or an RLE dict)
    texts: List[str]


def read_sa2va_annotations(path: str | Path) -> List[Sa2VARecord]:
    """Sa2VA's `annotations.json`: [{'image', 'mask': [[poly, ...], ...], 'text': [...]}, ...]."""
    doc = _load_json(path)
    if not isinstance(doc, list):
        raise DataReadError(f'{path}: a Sa2VA annotations.json must hold a list of records')
    records = []
    for i, rec in enumerate(doc):
        if not isinstance(rec, dict) or 'image' not in rec or 'mask' not in rec:
            raise DataReadError(f"{path}: record {i} needs 'image' and 'mask'")
        texts = rec.get('text', [])
        texts = [texts] if isinstance(texts, str) else list(texts)
        if texts and len(texts) != len(rec['mask']):
            raise DataReadError(f'{path}: record {i} ({rec["image"]}): {len(rec["mask"])} masks but {len(texts)} texts')
        records.append(Sa2VARecord(image=str(rec['image']), masks=list(rec['mask']), texts=texts))
    return records


def sa2va_record_mask(
    record: Sa2VARecord, image_hw: Tuple[int, int], texts: Optional[Iterable[str]] = None, strict: bool = True
) -> AnnotationMask:
    """Union of a record's object masks (optionally only those whose text is in `texts`)."""
    keep = None if texts is None else set(texts)
    result = AnnotationMask(mask=np.zeros(image_hw, dtype=bool))
    for j, seg in enumerate(record.masks):
        if keep is not None and (j >= len(record.texts) or record.texts[j] not in keep):
            continue
        try:
            result.mask |= segmentation_mask(seg, image_hw)
            result.n_shapes += 1
        except (DegenerateShapeError, ValueError) as exc:
            _problem(strict, result, f'{record.image}: object {j}: {exc}')
    return result

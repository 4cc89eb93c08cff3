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
Every failure raises DataReadError naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm")


class DataReadError(ValueError):
    """A data file could not be read or does not hold what it should."""


def _open(path: str | Path) -> Image.Image:
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise DataReadError(f"{path}: file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataReadError(f"{path}: cannot read image ({exc})") from exc
    return img


def _to_array(img: Image.Image, path: str | Path) -> np.ndarray:
    """The pixel values with their real bit depth (PIL's 'I;16' and 'I' modes kept wide)."""
    if img.mode == "P":
        # Palette indices mean nothing by themselves; the palette colours do.
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(img).astype(np.uint16)
    if img.mode == "I":
        arr = np.asarray(img)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataReadError(f"{path}: 32-bit integer image with values outside 0..65535")
        return arr.astype(np.uint16)
    if img.mode == "F":
        raise DataReadError(f"{path}: floating-point images are not supported")
    if img.mode in ("1", "L", "RGB", "RGBA", "LA"):
        return np.asarray(img)
    return np.asarray(img.convert("RGB"))


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3)."""
    img = _open(path)
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


def binarise(values: np.ndarray, source: str | Path = "<array>") -> np.ndarray:
    """Apply the mask binarisation rule of this module to a grey or colour array."""
    if values.dtype == bool:
        return values.copy()
    if values.ndim == 3:
        values = values.max(axis=2)
    if values.ndim != 2:
        raise DataReadError(f"{source}: mask must be 2-D, got shape {values.shape}")
    vmax = int(values.max()) if values.size else 0
    if vmax <= 1:
        return values == 1  # a 0/1 label map
    if values.dtype == np.uint8:
        return values > 127
    if values.dtype == np.uint16:
        return values > 32767
    raise DataReadError(f"{source}: unsupported mask dtype {values.dtype}")


def read_mask(path: str | Path) -> np.ndarray:
    """A mask (or FOV) file as bool (H, W) by the binarisation rule above."""
    img = _open(path)
    arr = _to_array(img, path)
    if arr.ndim == 3 and arr.shape[2] in (2, 4):
        arr = arr[..., :-1]  # drop alpha
    return binarise(arr, path)

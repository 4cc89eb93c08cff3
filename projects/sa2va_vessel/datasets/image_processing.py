"""Image inputs of Sa2VA: InternVL dynamic tiles (448 px) and the SAM2 image (1024 px).

Reproduces the official preprocessing bit for bit (checked against the golden fixture):
- tiles: InternVL `dynamic_preprocess` (grid by closest aspect ratio, PIL bicubic resize,
  row-major 448 crops, thumbnail appended last when there is more than one tile), then
  /255 and ImageNet normalisation with exact float32 constants;
- SAM2: PIL bicubic resize straight to 1024x1024 (the aspect ratio is squashed), /255 and
  normalisation with the bfloat16-rounded ImageNet constants that SAM2's
  `preprocess_image` uses by default even in float32.
"""

from __future__ import annotations

import functools
from typing import List, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torch.tensor(IMAGENET_*, dtype=torch.bfloat16) values, as SAM2 ends up using them.
SAM2_MEAN = (0.484375, 0.455078125, 0.40625)
SAM2_STD = (0.228515625, 0.2236328125, 0.224609375)
TILE_SIZE = 448
SAM2_SIZE = 1024


def target_ratios(min_num: int = 1, max_num: int = 12) -> List[Tuple[int, int]]:
    """Candidate (cols, rows) grids with min_num <= cols*rows <= max_num, sorted by area.

    Built as a Python set and stably sorted, like InternVL, so equal-area grids keep the
    same relative order as in the official code.
    """
    if not 1 <= min_num <= max_num:
        raise ValueError(f'need 1 <= min_num <= max_num, got {min_num}, {max_num}')
    ratios = set(
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    )
    return sorted(ratios, key=lambda r: r[0] * r[1])


def find_closest_aspect_ratio(
    width: int, height: int, ratios: Sequence[Tuple[int, int]], image_size: int = TILE_SIZE
) -> Tuple[int, int]:
    """The (cols, rows) grid whose aspect ratio is closest to width/height.

    On an exact tie a later (not smaller) grid wins only when the image has more than half
    of that grid's pixels, which is InternVL's rule for preferring more tiles.
    """
    aspect_ratio = width / height
    best_diff = float('inf')
    best = (1, 1)
    area = width * height
    for ratio in ratios:
        diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if diff < best_diff:
            best_diff = diff
            best = ratio
        elif diff == best_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best = ratio
    return best


def dynamic_tiles(
    image: Image.Image, min_num: int = 1, max_num: int = 12, image_size: int = TILE_SIZE, use_thumbnail: bool = True
) -> List[Image.Image]:
    """Cut `image` into InternVL tiles: grid tiles row-major, then the thumbnail if >1 tile."""
    width, height = image.size
    cols, rows = find_closest_aspect_ratio(width, height, target_ratios(min_num, max_num), image_size)
    resized = image.resize((image_size * cols, image_size * rows), Image.Resampling.BICUBIC)
    tiles = []
    for i in range(cols * rows):
        c, r = i % cols, i // cols
        box = (c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size)
        tiles.append(resized.crop(box))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size), Image.Resampling.BICUBIC))
    return tiles


def _to_rgb_pil(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'expected a uint8 (H, W, 3) array, got {image.dtype} {image.shape}')
        return Image.fromarray(image, mode='RGB')
    return image.convert('RGB')


def tiles_uint8(
    image: Image.Image | np.ndarray,
    min_num: int = 1,
    max_num: int = 12,
    image_size: int = TILE_SIZE,
    use_thumbnail: bool = True,
) -> np.ndarray:
    """InternVL tiles as a uint8 array (n_tiles, image_size, image_size, 3)."""
    tiles = dynamic_tiles(_to_rgb_pil(image), min_num, max_num, image_size, use_thumbnail)
    return np.stack([np.asarray(t) for t in tiles])


def sam2_image_uint8(image: Image.Image | np.ndarray, size: int = SAM2_SIZE) -> np.ndarray:
    """The SAM2 input before normalisation: uint8 (size, size, 3), aspect ratio squashed."""
    return np.asarray(_to_rgb_pil(image).resize((size, size), Image.Resampling.BICUBIC))


def _normalise(hwc_uint8: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32: x / 255 then (x - mean) / std."""
    arr = np.ascontiguousarray(hwc_uint8)
    if not arr.flags.writeable:  # PIL-backed arrays are read-only; torch wants writable memory
        arr = arr.copy()
    return normalise_chw(torch.from_numpy(arr).movedim(-1, -3), mean, std)


def normalise_chw(chw_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(..., 3, H, W) uint8 on any device -> float32: x / 255 then (x - mean) / std.

    Divides by 255 (not multiply by 1/255) and subtracts then divides, in float32, which
    is what torchvision's ToTensor + Normalize and SAM2's preprocess_image compute; each
    operation is exactly rounded, so the CPU and the GPU give the same bits.
    """
    x = chw_uint8.to(torch.float32).div(255)
    m, s = _mean_std(tuple(mean), tuple(std), x.device)
    return x.sub(m).div(s).contiguous()


@functools.lru_cache(maxsize=16)
def _mean_std(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: a fresh host-to-device copy of pageable memory every call would
    # synchronise the GPU (twice per forward)
    def column(values: tuple[float, ...]) -> torch.Tensor:
        return torch.tensor(values, dtype=torch.float32, device=device)[:, None, None]

    return column(mean), column(std)


def chw_uint8(hwc_uint8: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 array -> (..., 3, H, W) uint8 tensor (what the dataset ships).

    Raw pixels travel from the loader workers to the GPU, which normalises them
    (``normalise_tiles_tensor`` / ``normalise_sam2_tensor``): a quarter of float32's bytes
    through shared memory and the host-to-device copy.
    """
    arr = np.ascontiguousarray(hwc_uint8)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).movedim(-1, -3).contiguous()


def normalise_tiles(tiles: np.ndarray) -> torch.Tensor:
    """(T, 448, 448, 3) uint8 -> (T, 3, 448, 448) float32, ImageNet-normalised."""
    return _normalise(tiles, IMAGENET_MEAN, IMAGENET_STD)


def normalise_sam2(image: np.ndarray) -> torch.Tensor:
    """(1024, 1024, 3) uint8 -> (3, 1024, 1024) float32 with SAM2's bf16-rounded constants."""
    return _normalise(image, SAM2_MEAN, SAM2_STD)


def normalise_tiles_tensor(pixel_values: torch.Tensor) -> torch.Tensor:
    """Tiles as the model takes them: uint8 (T, 3, H, W) is normalised, float is already."""
    if pixel_values.dtype == torch.uint8:
        return normalise_chw(pixel_values, IMAGENET_MEAN, IMAGENET_STD)
    return pixel_values


def normalise_sam2_tensor(g_pixel_values: torch.Tensor) -> torch.Tensor:
    """The SAM2 input as the model takes it: uint8 (B, 3, 1024, 1024) is normalised, float is already."""
    if g_pixel_values.dtype == torch.uint8:
        return normalise_chw(g_pixel_values, SAM2_MEAN, SAM2_STD)
    return g_pixel_values


def preprocess_image(
    image: Image.Image | np.ndarray,
    min_num: int = 1,
    max_num: int = 12,
    image_size: int = TILE_SIZE,
    use_thumbnail: bool = True,
    sam2_size: int = SAM2_SIZE,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Both model inputs of one image: (pixel_values (T,3,448,448), g_pixel_values (3,1024,1024))."""
    pil = _to_rgb_pil(image)
    pixel_values = normalise_tiles(tiles_uint8(pil, min_num, max_num, image_size, use_thumbnail))
    g_pixel_values = normalise_sam2(sam2_image_uint8(pil, sam2_size))
    return pixel_values, g_pixel_values

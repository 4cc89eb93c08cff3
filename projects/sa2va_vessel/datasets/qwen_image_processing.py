"""Image inputs of the Qwen-VL Sa2VA families: what ``Qwen2VLImageProcessorFast`` computes.

transformers 4.57 picks the fast processor whenever torchvision is installed, and the official
Sa2VA-Qwen code (training: ``processor.image_processor(images=[image], min_pixels=512*28*28,
max_pixels=2048*28*28)``) therefore gets its numbers, which differ from the slow processor's
(PIL resize, separate rescale). This module restates the fast processor with plain torch (no
torchvision needed), checked bit for bit against the golden fixtures:

- ``smart_resize`` (transformers' own): height and width to multiples of patch x merge within the
  pixel limits;
- resize of the uint8 (3, H, W) tensor: torch's native uint8 bicubic with antialias (what
  torchvision ``F.resize`` runs for uint8 bicubic on CPU; a float32 resize then rounding is off by 1);
- fused rescale + normalise: ``(x - 255 mean) / (255 std)`` in float32;
- the image repeated to ``temporal_patch_size`` frames, cut into patches in MERGE-BLOCK order
  (the 2x2 patches one merged token fuses are consecutive): (gh * gw, 3 * T * p * p);
- ``image_grid_thw`` = (1, gh, gw); ``gh * gw / merge^2`` image tokens.

The inference pre-resize of ``qwen_vl_utils`` 0.0.14 (PIL bicubic to a multiple of 28, only in the
official ``predict_forward``) is ``qwen_vl_utils_resize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

# Hard-coded in the official Sa2VAChatModelQwen and its training datasets (single images).
SA2VA_MIN_PIXELS = 512 * 28 * 28
SA2VA_MAX_PIXELS = 2048 * 28 * 28
# qwen_vl_utils 0.0.14 defaults (image_patch_size 14 -> factor 28, whatever the family).
QWEN_VL_UTILS_FACTOR = 28
QWEN_VL_UTILS_MIN_PIXELS = 4 * 28 * 28
QWEN_VL_UTILS_MAX_PIXELS = 16384 * 28 * 28


@dataclass(frozen=True)
class QwenImageSettings:
    """The image processor settings of one checkpoint (its ``preprocessor_config.json``)."""

    patch_size: int
    merge_size: int
    temporal_patch_size: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    min_pixels: int = SA2VA_MIN_PIXELS
    max_pixels: int = SA2VA_MAX_PIXELS

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size


@dataclass
class QwenImageInputs:
    pixel_values: torch.Tensor  # (gh * gw, 3 * T * p * p) float32, merge-block order
    image_grid_thw: torch.Tensor  # (1, 3) int64
    resized_uint8: np.ndarray  # (H', W', 3) the resized image

    @property
    def num_image_tokens(self) -> int:
        t, h, w = (int(v) for v in self.image_grid_thw[0])
        return t * h * w


def resize_uint8(image_hwc: np.ndarray, height: int, width: int) -> np.ndarray:
    """torchvision's bicubic antialiased resize of a uint8 image (torch's native uint8 kernel)."""
    arr = np.array(image_hwc, dtype=np.uint8, copy=True)  # writable, contiguous
    x = torch.from_numpy(arr).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(height, width), mode='bicubic', align_corners=False, antialias=True)
    return x[0].permute(1, 2, 0).contiguous().numpy()


def patchify(resized_hwc: np.ndarray, settings: QwenImageSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised patches in merge-block order and the (1, 3) grid of one resized image."""
    mean = torch.tensor(settings.image_mean, dtype=torch.float32) * 255.0
    std = torch.tensor(settings.image_std, dtype=torch.float32) * 255.0
    x = torch.from_numpy(np.ascontiguousarray(resized_hwc)).permute(2, 0, 1).to(torch.float32)
    x = (x - mean[:, None, None]) / std[:, None, None]
    p, m, t = settings.patch_size, settings.merge_size, settings.temporal_patch_size
    c, h, w = x.shape
    if h % (p * m) or w % (p * m):
        raise ValueError(f'image {h}x{w} is not a multiple of patch x merge = {p * m}')
    gh, gw = h // p, w // p
    frames = x[None].expand(t, c, h, w)  # a single image fills every temporal slot
    patches = frames.reshape(1, t, c, gh // m, m, p, gw // m, m, p)
    patches = patches.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    patches = patches.reshape(gh * gw, c * t * p * p).contiguous()
    return patches, torch.tensor([[1, gh, gw]], dtype=torch.long)


def process_image(image: Image.Image | np.ndarray, settings: QwenImageSettings) -> QwenImageInputs:
    """The fast Qwen-VL image processor on one RGB image (training path of the official code)."""
    arr = np.asarray(image.convert('RGB')) if isinstance(image, Image.Image) else image
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f'expected a uint8 (H, W, 3) image, got {arr.dtype} {arr.shape}')
    height, width = smart_resize(
        arr.shape[0],
        arr.shape[1],
        factor=settings.factor,
        min_pixels=settings.min_pixels,
        max_pixels=settings.max_pixels,
    )
    resized = resize_uint8(arr, height, width)
    pixel_values, grid = patchify(resized, settings)
    return QwenImageInputs(pixel_values=pixel_values, image_grid_thw=grid, resized_uint8=resized)


def qwen_vl_utils_resize(image: Image.Image) -> Image.Image:
    """``qwen_vl_utils.process_vision_info``'s pre-resize (official inference only), PIL bicubic."""
    width, height = image.size
    h_bar = max(QWEN_VL_UTILS_FACTOR, round(height / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR)
    w_bar = max(QWEN_VL_UTILS_FACTOR, round(width / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR)
    if h_bar * w_bar > QWEN_VL_UTILS_MAX_PIXELS:
        beta = math.sqrt(height * width / QWEN_VL_UTILS_MAX_PIXELS)
        h_bar = math.floor(height / beta / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR
        w_bar = math.floor(width / beta / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR
    elif h_bar * w_bar < QWEN_VL_UTILS_MIN_PIXELS:
        beta = math.sqrt(QWEN_VL_UTILS_MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR
        w_bar = math.ceil(width * beta / QWEN_VL_UTILS_FACTOR) * QWEN_VL_UTILS_FACTOR
    return image.convert('RGB').resize((w_bar, h_bar), Image.Resampling.BICUBIC)


def settings_from_preprocessor_config(cfg: dict, defaults: 'QwenImageSettings') -> QwenImageSettings:
    """A ``preprocessor_config.json`` content over the family defaults (pixel limits stay Sa2VA's)."""

    def triple(key: str, fallback: Sequence[float]) -> tuple[float, float, float]:
        value = cfg.get(key, fallback)
        return tuple(float(v) for v in value)  # type: ignore[return-value]

    return QwenImageSettings(
        patch_size=int(cfg.get('patch_size', defaults.patch_size)),
        merge_size=int(cfg.get('merge_size', defaults.merge_size)),
        temporal_patch_size=int(cfg.get('temporal_patch_size', defaults.temporal_patch_size)),
        image_mean=triple('image_mean', defaults.image_mean),
        image_std=triple('image_std', defaults.image_std),
    )


# The base checkpoints' processor settings (used when a directory has no preprocessor_config.json).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FAMILY_DEFAULTS = {
    'qwen2_5_vl': QwenImageSettings(14, 2, 2, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    'qwen3_vl': QwenImageSettings(16, 2, 2, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}

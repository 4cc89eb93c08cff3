"""Model inputs of a video (a sequence of frames), as the official Sa2VA video path builds them.

- LLM: each frame becomes exactly ONE 448x448 tile (PIL bicubic squash, no dynamic tiling, no
  thumbnail), ImageNet-normalised with exact float32 constants;
- the prompt holds one ``<img>`` + 256 x ``<IMG_CONTEXT>`` + ``</img>`` block per frame, joined by
  one newline (``(block + '\\n') * n`` stripped), in place of ``<image>``;
- SAM2: every frame PIL-bicubic-resized to 1024x1024 with the bfloat16-rounded constants.

Frames come from a folder of images (sorted by name, natural order) or, with the optional
``video`` extra (imageio + PyAV), from a video file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from PIL import Image

from .conversation import IMG_CONTEXT_TOKEN, IMG_END_TOKEN, IMG_START_TOKEN, TOKENS_PER_TILE
from .image_processing import SAM2_SIZE, TILE_SIZE, normalise_sam2, normalise_tiles, sam2_image_uint8

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.gif', '.mpg', '.mpeg')


def frame_tile_uint8(frame: np.ndarray | Image.Image, size: int = TILE_SIZE) -> np.ndarray:
    """The one LLM tile of a video frame: (size, size, 3) uint8, aspect ratio squashed."""
    pil = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame))
    return np.asarray(pil.convert('RGB').resize((size, size), Image.Resampling.BICUBIC))


def video_pixel_values(frames: Sequence[np.ndarray], size: int = TILE_SIZE) -> torch.Tensor:
    """(T, 3, 448, 448) float32 tiles of the LLM frames, one per frame, in order."""
    return normalise_tiles(np.stack([frame_tile_uint8(f, size) for f in frames]))


def video_g_pixel_values(frame: np.ndarray, size: int = SAM2_SIZE) -> torch.Tensor:
    """(1, 3, 1024, 1024) SAM2 input of one frame."""
    return normalise_sam2(sam2_image_uint8(frame, size))[None]


def video_token_string(n_frames: int, tokens_per_frame: int = TOKENS_PER_TILE) -> str:
    """One image block per frame, separated by a newline (the official ``(block + '\\n') * n`` stripped)."""
    if n_frames < 1:
        raise ValueError(f'n_frames must be >= 1, got {n_frames}')
    block = IMG_START_TOKEN + IMG_CONTEXT_TOKEN * tokens_per_frame + IMG_END_TOKEN
    return ((block + '\n') * n_frames).strip()


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r'(\d+)', path.name)]


def list_frame_files(folder: str | Path) -> List[Path]:
    """Image files of a frame folder in natural order (frame_2 before frame_10)."""
    from .readers import IMAGE_EXTENSIONS

    folder = Path(folder)
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in exts), key=_natural_key)
    if not files:
        raise FileNotFoundError(f'{folder}: no frame images ({sorted(exts)})')
    return files


def read_video_file(path: str | Path) -> List[np.ndarray]:
    """All frames of a video file as (H, W, 3) uint8 (needs the optional 'video' extra)."""
    try:
        import imageio.v3 as iio
    except ImportError:
        raise ImportError(
            f'{path}: reading video files needs imageio and PyAV: '
            "pip install 'sa2va-vessel[video]' (or pass a folder of frames)"
        ) from None
    frames = [np.asarray(f) for f in iio.imiter(str(path))]
    if not frames:
        raise ValueError(f'{path}: the video has no frames')
    return [f[..., :3] if f.ndim == 3 else np.repeat(f[..., None], 3, axis=-1) for f in frames]


def read_frames(source: str | Path) -> tuple[List[np.ndarray], List[str]]:
    """(frames (H, W, 3) uint8, frame names) of a frame folder or a video file.

    All frames must share frame 0's size (the official path resizes every mask to it).
    """
    from .readers import read_image

    source = Path(source)
    if source.is_dir():
        files = list_frame_files(source)
        frames, names = [read_image(p) for p in files], [p.stem for p in files]
    elif source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
        frames = read_video_file(source)
        names = [f'frame_{i:05d}' for i in range(len(frames))]
    else:
        raise FileNotFoundError(f'{source}: neither a folder of frames nor a video file ({VIDEO_EXTENSIONS})')
    size = frames[0].shape[:2]
    for name, f in zip(names, frames):
        if f.shape[:2] != size:
            raise ValueError(
                f'{source}: frame {name} is {f.shape[:2]}, frame 0 is {size}; frames of a video must share one size'
            )
    return frames, names

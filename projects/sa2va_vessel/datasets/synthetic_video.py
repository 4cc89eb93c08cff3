"""Seeded synthetic angiography-like SEQUENCES: a vessel tree that deforms slowly (a heartbeat-like
smooth displacement plus a drift) while its contrast washes in and out.

Frame t of a video is the base sample of ``synthetic.make_vessel_sample`` warped by the field
``d_t(x, y)``; the mask is warped the same way (nearest), so it stays exact, and the vessel
contrast against a vessel-free background estimate is scaled by ``c(t)`` (a bolus curve, low at
the ends). Fresh sensor noise per frame.

Layout written by ``write_synthetic_video_dataset`` (the frame-naming rule of
``video_dataset.group_frames``): ``images/<video>_f<idx>.png``, ``masks/<video>_f<idx>.png`` only
for labelled frames (unlabelled frames have no mask file), ``fov/``, and ``splits/{train,val}.txt``
listing frame stems, every frame of a video in the same split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from .synthetic import make_vessel_sample


def contrast_curve(n_frames: int, low: float = 0.35) -> np.ndarray:
    """Bolus curve c(t): ``low`` at the first and last frame, 1 in the middle (raised cosine)."""
    t = np.arange(n_frames) / max(1, n_frames - 1)
    return low + (1 - low) * np.sin(np.pi * t) ** 2 if n_frames > 1 else np.ones(1)


def _warp(array: np.ndarray, dx: np.ndarray, dy: np.ndarray, mode: str) -> np.ndarray:
    """Backward warp: out(x, y) = array(x - dx, y - dy)."""
    h, w = array.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(array, np.float32))
    x = x[None, None] if x.ndim == 2 else x.permute(2, 0, 1)[None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx = (xx - dx) / (w - 1) * 2 - 1
    gy = (yy - dy) / (h - 1) * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], -1)[None].astype(np.float32))
    out = F.grid_sample(x, grid, mode=mode, padding_mode='border', align_corners=True)[0]
    return out[0].numpy() if array.ndim == 2 else out.permute(1, 2, 0).numpy()


def make_vessel_sequence(
    seed: int, n_frames: int = 8, size: int = 256, amplitude: float = 0.02, drift: float = 0.004
) -> Tuple[List[np.ndarray], List[np.ndarray], np.ndarray]:
    """(frames uint8 (H, W, 3), masks bool (H, W), fov bool (H, W)) of one moving sequence.

    ``amplitude`` and ``drift`` are fractions of the image side (displacement amplitude, drift
    per frame).
    """
    base = make_vessel_sample(seed, size)
    rng = np.random.default_rng([seed, 7])
    img = base.image.astype(np.float32)
    keep = (~base.mask).astype(np.float32)
    # vessel-free background: the image blurred with the vessel pixels left out
    blur = ImageFilter.GaussianBlur(radius=max(2.0, size / 64))
    num = np.stack(
        [
            np.asarray(Image.fromarray(np.clip(img[..., c] * keep, 0, 255).astype(np.uint8)).filter(blur), np.float32)
            for c in range(3)
        ],
        -1,
    )
    den = np.asarray(Image.fromarray((keep * 255).astype(np.uint8)).filter(blur), np.float32)[..., None] / 255
    background = np.where(base.mask[..., None], num / np.maximum(den, 1e-3), img)
    vessel = img - background
    curve = contrast_curve(n_frames)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    kx, ky, phase = rng.uniform(1.0, 2.0), rng.uniform(1.0, 2.0), rng.uniform(0, 2 * math.pi)
    frames, masks = [], []
    for t in range(n_frames):
        beat = math.sin(2 * math.pi * t / max(1, n_frames) + phase)
        dx = size * (amplitude * beat * np.sin(2 * math.pi * ky * yy) + drift * t)
        dy = size * (amplitude * beat * np.cos(2 * math.pi * kx * xx) + 0.5 * drift * t)
        frame = background + curve[t] * vessel
        frame = _warp(frame, dx, dy, 'bilinear') + rng.normal(0, 2.0, size=frame.shape)
        mask = _warp(base.mask.astype(np.float32), dx, dy, 'nearest') > 0.5
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
        masks.append(mask & base.fov)
    return frames, masks, base.fov


def write_synthetic_video_dataset(
    out_dir: str | Path,
    n_videos: int,
    n_frames: int,
    seed: int = 0,
    size: int = 256,
    val_fraction: float = 0.25,
    label_every: int = 1,
) -> Tuple[List[str], List[str]]:
    """Write ``n_videos`` sequences (module docstring layout); frames whose index is not a multiple
    of ``label_every`` get no mask (unlabelled). Returns (train videos, val videos)."""
    if n_videos < 1 or n_frames < 1 or label_every < 1:
        raise ValueError('n_videos, n_frames and label_every must be >= 1')
    out = Path(out_dir)
    for sub in ('images', 'masks', 'fov', 'splits'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    videos = [f'vid{i:03d}' for i in range(n_videos)]
    for i, video in enumerate(videos):
        frames, masks, fov = make_vessel_sequence(
            int(np.random.SeedSequence([seed, i]).generate_state(1)[0]), n_frames, size
        )
        for t, (frame, mask) in enumerate(zip(frames, masks)):
            stem = f'{video}_f{t:04d}'
            Image.fromarray(frame).save(out / 'images' / f'{stem}.png')
            Image.fromarray(fov.astype(np.uint8) * 255).save(out / 'fov' / f'{stem}.png')
            if t % label_every == 0:
                Image.fromarray(mask.astype(np.uint8) * 255).save(out / 'masks' / f'{stem}.png')
    order = np.random.default_rng([seed, 0x5EED]).permutation(n_videos)
    n_val = (
        min(max(int(round(n_videos * val_fraction)), 1 if val_fraction > 0 else 0), n_videos - 1) if n_videos > 1 else 0
    )
    val = sorted(videos[j] for j in order[:n_val])
    train = sorted(videos[j] for j in order[n_val:])
    for name, group in (('train', train), ('val', val)):
        stems = [f'{v}_f{t:04d}' for v in group for t in range(n_frames)]
        (out / 'splits' / f'{name}.txt').write_text(''.join(s + '\n' for s in stems))
    return train, val

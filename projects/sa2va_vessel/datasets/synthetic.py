"""Seeded synthetic fundus-like vessel images with exact masks.

The vessel set is drawn first (PIL lines and round joints); the mask IS that drawn set
(inside the field of view) and the image is rendered from it, so the mask is exact by
construction. Vessels are darker than the background, as in the green channel of a fundus
photograph. numpy + PIL only, one 512x512 sample in a few tens of milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

MIN_WIDTH = 1
MAX_WIDTH = 8


@dataclass
class VesselSample:
    """One synthetic sample: uint8 RGB image (H, W, 3), bool mask and bool FOV (H, W)."""

    image: np.ndarray
    mask: np.ndarray
    fov: np.ndarray
    widths: List[int] = field(default_factory=list)  # drawn line widths, for tests/stats
    width_map: np.ndarray | None = None  # uint8 (H, W): drawn width of the vessel at each mask pixel, else 0


@dataclass(frozen=True)
class _Segment:
    p0: Tuple[float, float]
    p1: Tuple[float, float]
    width: int


def _grow_tree(
    rng: np.random.Generator,
    root: Tuple[float, float],
    angle: float,
    width: float,
    center: Tuple[float, float],
    radius: float,
    max_segments: int,
    max_width: int = MAX_WIDTH,
) -> List[_Segment]:
    """Grow one branching, tapering, curving vessel tree from `root`.

    A stack instead of recursion keeps the order (hence the output) fixed for a seed.
    """
    segments: List[_Segment] = []
    stack = [(root, angle, width, 0)]
    while stack and len(segments) < max_segments:
        (x, y), ang, w, depth = stack.pop()
        curvature = rng.normal(0.0, 0.02)
        # Each branch tapers by ~0.5-2 % per step so it ends near the minimum width.
        taper = rng.uniform(0.985, 0.995)
        while w >= MIN_WIDTH - 0.25 and len(segments) < max_segments:
            step = rng.uniform(4.0, 8.0)
            curvature = float(np.clip(curvature + rng.normal(0.0, 0.008), -0.06, 0.06))
            ang += curvature + rng.normal(0.0, 0.04)
            nx, ny = x + step * math.cos(ang), y + step * math.sin(ang)
            if math.hypot(nx - center[0], ny - center[1]) > radius * 1.02:
                break  # left the field of view: nothing more to draw on this branch
            draw_w = int(min(max_width, max(MIN_WIDTH, round(w))))
            segments.append(_Segment((x, y), (nx, ny), draw_w))
            x, y = nx, ny
            w *= taper
            if depth < 5 and w > 1.6 and rng.random() < 0.045:
                side = 1.0 if rng.random() < 0.5 else -1.0
                child_angle = ang + side * rng.uniform(0.4, 1.1)
                child_w = w * rng.uniform(0.55, 0.8)
                stack.append(((x, y), child_angle, child_w, depth + 1))
                w *= rng.uniform(0.85, 0.97)  # the parent thins after giving off a branch
    return segments


def _draw_vessels(segments: Sequence[_Segment], size: int, by_width: bool = False) -> np.ndarray:
    """Rasterise segments into a uint8 contrast map; > 0 exactly on vessel pixels (``by_width``:
    the value is the segment's width instead, the last drawn where segments overlap)."""
    canvas = Image.new('L', (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    for seg in segments:
        # Thin vessels have lower contrast, as in real fundus images.
        level = seg.width if by_width else int(90 + 20 * seg.width)
        draw.line([seg.p0, seg.p1], fill=level, width=seg.width)
        if seg.width >= 3:  # round joints so consecutive wide segments leave no notches
            r = (seg.width - 1) / 2.0
            x, y = seg.p1
            draw.ellipse([x - r, y - r, x + r, y + r], fill=level)
    return np.asarray(canvas)


def make_vessel_sample(
    seed: int, size: int = 512, max_width: int = MAX_WIDTH, with_width_map: bool = False
) -> VesselSample:
    """Generate one deterministic sample for `seed` at `size` x `size` pixels.

    ``max_width`` caps the vessel width (roots start at most that wide; e.g. 3 for a set of only
    1-3 px vessels); with the default the output is unchanged. ``with_width_map`` also fills
    ``width_map`` (per-width evaluation, tools/compare_recipes.py).
    """
    if size < 64:
        raise ValueError(f'synthetic sample size must be >= 64, got {size}')
    if not MIN_WIDTH <= max_width <= MAX_WIDTH:
        raise ValueError(f'max_width must be in [{MIN_WIDTH}, {MAX_WIDTH}], got {max_width}')
    rng = np.random.default_rng(seed)
    s = float(size)
    center = (s / 2 + rng.uniform(-0.02, 0.02) * s, s / 2 + rng.uniform(-0.02, 0.02) * s)
    radius = s * rng.uniform(0.44, 0.48)

    # Optic disc off-centre on a random side; vessels emanate from it.
    side = 1.0 if rng.random() < 0.5 else -1.0
    disc = (center[0] + side * radius * rng.uniform(0.25, 0.4), center[1] + radius * rng.uniform(-0.1, 0.1))
    disc_r = radius * rng.uniform(0.1, 0.14)

    segments: List[_Segment] = []
    n_roots = int(rng.integers(4, 8))
    base_angles = np.linspace(0.0, 2 * math.pi, n_roots, endpoint=False) + rng.uniform(0, 2 * math.pi)
    budget = max(200, int(1400 * (s / 512.0)))
    for a in base_angles:
        ang = float(a + rng.normal(0.0, 0.25))
        root = (disc[0] + 0.3 * disc_r * math.cos(ang), disc[1] + 0.3 * disc_r * math.sin(ang))
        width = rng.uniform(5.0, MAX_WIDTH) * max(0.5, s / 512.0)
        segments += _grow_tree(
            rng, root, ang, min(width, max_width), center, radius, max_segments=budget // n_roots, max_width=max_width
        )

    contrast_u8 = _draw_vessels(segments, size)

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    rr = np.hypot(xx - center[0], yy - center[1])
    fov = rr <= radius
    mask = (contrast_u8 > 0) & fov
    contrast = contrast_u8.astype(np.float32) / 255.0 * rng.uniform(0.6, 0.9)

    # Illumination: a linear gradient in a random direction times a radial vignette.
    g_ang = rng.uniform(0, 2 * math.pi)
    ramp = ((xx - center[0]) * math.cos(g_ang) + (yy - center[1]) * math.sin(g_ang)) / radius
    illum = (1.0 + rng.uniform(0.15, 0.35) * ramp) * (1.0 - 0.35 * (rr / radius) ** 2)
    disc_glow = np.exp(-((xx - disc[0]) ** 2 + (yy - disc[1]) ** 2) / (2 * disc_r**2))
    macula = (center[0] - side * radius * 0.05, center[1])
    macula_dark = np.exp(-((xx - macula[0]) ** 2 + (yy - macula[1]) ** 2) / (2 * (0.15 * radius) ** 2))
    base = illum * (1.0 + 0.8 * disc_glow) * (1.0 - 0.25 * macula_dark)

    tint = np.array([rng.uniform(190, 230), rng.uniform(95, 125), rng.uniform(35, 60)], np.float32)
    darkening = np.array([0.35, 1.0, 0.6], np.float32)  # green shows vessels best
    rgb = base[..., None] * tint * (1.0 - contrast[..., None] * darkening)
    rgb_img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    rgb_img = rgb_img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.0))))
    out = np.asarray(rgb_img).astype(np.float32)
    out += rng.normal(0.0, rng.uniform(2.0, 5.0), size=out.shape).astype(np.float32)
    out[~fov] = rng.uniform(0, 6, size=(int((~fov).sum()), 3))  # dark outside the FOV disc
    image = np.clip(out, 0, 255).astype(np.uint8)
    width_map = (
        np.where(mask, _draw_vessels(segments, size, by_width=True), 0).astype(np.uint8) if with_width_map else None
    )
    return VesselSample(image=image, mask=mask, fov=fov, widths=[seg.width for seg in segments], width_map=width_map)


def _split_stems(stems: Sequence[str], seed: int, val_fraction: float) -> Tuple[List[str], List[str]]:
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    order = np.random.default_rng([seed, 0x5EED]).permutation(len(stems))
    n_val = int(round(len(stems) * val_fraction))
    if val_fraction > 0 and len(stems) >= 2:
        n_val = min(max(n_val, 1), len(stems) - 1)  # both splits non-empty
    val = sorted(stems[i] for i in order[:n_val])
    train = sorted(stems[i] for i in order[n_val:])
    return train, val


def sample_seed(seed: int, index: int) -> int:
    """The generator seed of sample ``index`` of a set written with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_synthetic_dataset(
    out_dir: str | Path, n: int, seed: int, size: int = 512, val_fraction: float = 0.25, max_width: int = MAX_WIDTH
) -> Tuple[List[str], List[str]]:
    """Write `n` samples as images/, masks/, fov/ PNGs plus splits/{train,val}.txt.

    Sample i uses the seed sequence (seed, i), so a sample does not depend on `n`.
    Returns (train_stems, val_stems).
    """
    if n < 1:
        raise ValueError(f'n must be >= 1, got {n}')
    if not 0.0 <= val_fraction < 1.0:  # checked before anything is written
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    out = Path(out_dir)
    for sub in ('images', 'masks', 'fov', 'splits'):
        (out / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(n):
        stem = f'synth_{i:05d}'
        sample = make_vessel_sample(sample_seed(seed, i), size, max_width)
        Image.fromarray(sample.image).save(out / 'images' / f'{stem}.png')
        Image.fromarray(sample.mask.astype(np.uint8) * 255).save(out / 'masks' / f'{stem}.png')
        Image.fromarray(sample.fov.astype(np.uint8) * 255).save(out / 'fov' / f'{stem}.png')
        stems.append(stem)
    train, val = _split_stems(stems, seed, val_fraction)
    (out / 'splits' / 'train.txt').write_text(''.join(s + '\n' for s in train))
    (out / 'splits' / 'val.txt').write_text(''.join(s + '\n' for s in val))
    return train, val

"""Small synthetic mask files, sound and wrong, for the data-validation tests.

Each writer saves one H x W file and returns nothing; BAD_MASKS maps a case name to its
writer and the MaskProblem kind every tool must name for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from projects.sa2va_vessel.datasets import mask_validation as mv

H, W = 32, 40


def vessels() -> np.ndarray:
    """A sound vessel pattern: two lines and a column, ~10 % of the image."""
    m = np.zeros((H, W), bool)
    m[8, 4:36] = m[20, 2:30] = True
    m[4:28, 25] = True
    return m


def write_good(path: Path) -> None:
    Image.fromarray(vessels().astype(np.uint8) * 255).save(path)


def write_image(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(20, 230, size=(H, W, 3), dtype=np.uint8)).save(path)


def _all_zero(path: Path) -> None:
    Image.fromarray(np.zeros((H, W), np.uint8)).save(path)


def _all_one(path: Path) -> None:
    Image.fromarray(np.full((H, W), 255, np.uint8)).save(path)


def _inverted(path: Path) -> None:
    """96 % "vessel": background and vessels swapped."""
    m = np.full(H * W, 255, np.uint8)
    m[: int(0.04 * H * W)] = 0
    Image.fromarray(m.reshape(H, W)).save(path)


def _rgba_alpha(path: Path) -> None:
    """White colour everywhere, the vessels only in the alpha channel."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[..., 3] = vessels().astype(np.uint8) * 255
    Image.fromarray(rgba, 'RGBA').save(path)


def _16bit_0_255(path: Path) -> None:
    Image.fromarray(vessels().astype(np.uint16) * 255).save(path)  # mode I;16


def _non_binary(path: Path) -> None:
    m = vessels().astype(np.uint8) * 255
    m[vessels()] = np.linspace(130, 255, int(vessels().sum())).astype(np.uint8)  # anti-aliased look
    Image.fromarray(m).save(path)


BAD_MASKS = {
    'all_zero': (_all_zero, mv.EMPTY),
    'all_one': (_all_one, mv.ALL_VESSEL),
    'inverted_96pct': (_inverted, mv.MOSTLY_VESSEL),
    'rgba_alpha': (_rgba_alpha, mv.ALPHA_CHANNEL),
    '16bit_0_255': (_16bit_0_255, mv.RANGE_16BIT),
    'non_binary': (_non_binary, mv.NON_BINARY),
}


def write_two_colour_palette(path: Path) -> None:
    """A palette ('P') mask whose two colours are black and red: binary, no warning due."""
    img = Image.fromarray(vessels().astype(np.uint8), 'L').convert('P')
    img.putpalette([0, 0, 0, 200, 0, 0] + [0, 0, 0] * 254)
    img.save(path)


def canonical_set(root: Path, bad_writer=None, n_good: int = 2, splits=('train',)) -> Path:
    """images/, masks/, splits/<split>.txt with `n_good` sound samples (+ 'bad' when a writer is given)."""
    for sub in ('images', 'masks', 'splits'):
        (root / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for i in range(n_good):
        write_image(root / 'images' / f'good{i}.png', i)
        write_good(root / 'masks' / f'good{i}.png')
        stems.append(f'good{i}')
    if bad_writer is not None:
        write_image(root / 'images' / 'bad.png', 9)
        bad_writer(root / 'masks' / 'bad.png')
        stems.insert(0, 'bad')
    for split in splits:
        (root / 'splits' / f'{split}.txt').write_text('\n'.join(stems) + '\n')
    return root


def fives_source(root: Path, bad_writer=None, n_good: int = 2) -> Path:
    """A FIVES-layout source: train/Original/*.png with train/Ground truth/*.png, plus one test
    image (test/, which the FIVES protocol needs)."""
    for part in ('Original', 'Ground truth'):
        (root / 'test' / part).mkdir(parents=True, exist_ok=True)
    write_image(root / 'test' / 'Original' / 't0_A.png', 7)
    write_good(root / 'test' / 'Ground truth' / 't0_A.png')
    orig, gt = root / 'train' / 'Original', root / 'train' / 'Ground truth'
    orig.mkdir(parents=True, exist_ok=True)
    gt.mkdir(parents=True, exist_ok=True)
    for i in range(n_good):
        write_image(orig / f'{i}_A.png', i)
        write_good(gt / f'{i}_A.png')
    if bad_writer is not None:
        write_image(orig / '9_X.png', 9)
        bad_writer(gt / '9_X.png')
    return root

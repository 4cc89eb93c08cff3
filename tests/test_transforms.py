"""Augmentation: masks follow the geometry exactly, photometric ops leave labels alone."""

import numpy as np

from projects.sa2va_vessel.datasets.synthetic import make_vessel_sample
from projects.sa2va_vessel.datasets.transforms import VesselAugment, clahe

GEOM_ONLY = dict(brightness=0.0, contrast=0.0, gamma_range=(1.0, 1.0), clahe_prob=0.0)


def _coded(sample):
    """An image whose red channel is the mask and green the FOV, to track geometry."""
    img = sample.image.copy()
    img[..., 0] = sample.mask * 255
    img[..., 1] = sample.fov * 255
    return img


def test_flips_rot90_crop_are_exact():
    s = make_vessel_sample(0, size=128)
    aug = VesselAugment(crop_size=96, affine_prob=0.0, **GEOM_ONLY)
    for seed in range(8):
        img, mask, fov = aug(_coded(s), s.mask, s.fov, np.random.default_rng(seed))
        assert img.shape[:2] == mask.shape == fov.shape == (96, 96)
        assert np.array_equal(img[..., 0] > 127, mask) and np.array_equal(img[..., 1] > 127, fov)


def test_affine_moves_mask_with_image():
    s = make_vessel_sample(1, size=160)
    aug = VesselAugment(affine_prob=1.0, hflip=0.0, vflip=0.0, rot90=False, max_rotate=15, **GEOM_ONLY)
    img, mask, fov = aug(_coded(s), s.mask, s.fov, np.random.default_rng(3))
    assert mask.dtype == bool and fov.dtype == bool and not np.array_equal(mask, s.mask)
    # Bilinear image vs nearest mask: they may differ only on boundary pixels.
    disagree = (img[..., 0] > 127) != mask
    assert disagree.sum() < 0.15 * max(mask.sum(), 1)
    assert abs(int(mask.sum()) - int(s.mask.sum())) < 0.3 * s.mask.sum()


def test_identity_settings_and_disabled():
    s = make_vessel_sample(2, size=96)
    off = VesselAugment(enabled=False)
    out = off(s.image, s.mask, s.fov, np.random.default_rng(0))
    assert out[0] is s.image and out[1] is s.mask and out[2] is s.fov
    ident = VesselAugment(hflip=0.0, vflip=0.0, rot90=False, affine_prob=0.0, **GEOM_ONLY)
    img, mask, fov = ident(s.image, s.mask, None, np.random.default_rng(0))
    assert np.array_equal(img, s.image) and np.array_equal(mask, s.mask) and fov is None


def test_photometric_changes_image_not_labels_and_is_seeded():
    s = make_vessel_sample(3, size=96)
    aug = VesselAugment(hflip=0.0, vflip=0.0, rot90=False, affine_prob=0.0, clahe_prob=1.0)
    a = aug(s.image, s.mask, s.fov, np.random.default_rng(5))
    b = aug(s.image, s.mask, s.fov, np.random.default_rng(5))
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], s.image)
    assert np.array_equal(a[1], s.mask) and a[0].dtype == np.uint8


def _tone_per_pixel(aug: VesselAugment, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Contrast, brightness and gamma computed on every pixel (the definition the table must match)."""
    x = image.astype(np.float32) / 255.0
    x = x * (1.0 + rng.uniform(-aug.contrast, aug.contrast)) + (x.mean() * rng.uniform(-aug.contrast, aug.contrast))
    x = x + rng.uniform(-aug.brightness, aug.brightness)
    gamma = np.exp(rng.uniform(np.log(aug.gamma_range[0]), np.log(aug.gamma_range[1])))
    return np.clip(np.round(np.clip(x, 0.0, 1.0) ** gamma * 255.0), 0, 255).astype(np.uint8)


def test_photometric_table_gives_the_bits_of_the_per_pixel_formula():
    aug = VesselAugment(brightness=0.3, contrast=0.3, gamma_range=(0.5, 2.0), clahe_prob=0.0)
    for seed in range(20):
        image = make_vessel_sample(seed, size=64).image
        expected = _tone_per_pixel(aug, image, np.random.default_rng(seed))
        got = aug.photometric(image, np.random.default_rng(seed))
        assert np.array_equal(got, expected), seed
        assert not np.array_equal(got, image)


def test_clahe_spreads_a_low_contrast_image():
    rng = np.random.default_rng(0)
    flat = (100 + rng.integers(0, 10, size=(64, 64, 3))).astype(np.uint8)
    out = clahe(flat)
    assert out.shape == flat.shape and out.dtype == np.uint8
    assert out.std() > 3 * flat.std()
    assert clahe(flat[..., 0]).shape == (64, 64)


def test_dataset_builds_transform_from_config(tmp_path):
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from tests._data_support import tiny_checkpoint_dir

    write_synthetic_dataset(tmp_path, n=2, seed=0, size=96, val_fraction=0.5)
    ds = VesselSegDataset(
        str(tmp_path), 'train', str(tiny_checkpoint_dir()), transform=dict(type='VesselAugment', crop_size=64)
    )
    assert isinstance(ds.transform, VesselAugment)
    item = ds[0]
    assert item['masks'].shape == (1, 64, 64) and item['ori_size'] == (64, 64)

"""The synthetic vessel generator: seeded, fast, widths 1..8 px, exact masks inside the FOV."""

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.synthetic import MAX_WIDTH, MIN_WIDTH, make_vessel_sample, write_synthetic_dataset


def _shift_and(mask: np.ndarray) -> np.ndarray:
    """3x3 erosion with numpy shifts (no scipy)."""
    out = mask.copy()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            out &= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def _shift_or(mask: np.ndarray, r: int) -> np.ndarray:
    out = mask.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= np.roll(np.roll(mask, dy, 0), dx, 1)
    return out


def test_same_seed_same_sample_and_different_seed_differs():
    a, b, c = make_vessel_sample(3), make_vessel_sample(3), make_vessel_sample(4)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.fov, b.fov)
    assert not np.array_equal(a.mask, c.mask)


def test_types_shapes_and_mask_inside_fov():
    s = make_vessel_sample(0, size=256)
    assert s.image.shape == (256, 256, 3) and s.image.dtype == np.uint8
    assert s.mask.shape == s.fov.shape == (256, 256) and s.mask.dtype == s.fov.dtype == bool
    assert not (s.mask & ~s.fov).any()
    assert 0.01 < s.mask.mean() < 0.2


def test_widths_stay_in_range_and_span_it():
    widths = [w for seed in range(5) for w in make_vessel_sample(seed).widths]
    assert min(widths) == MIN_WIDTH == 1 and max(widths) == MAX_WIDTH == 8
    assert len(set(widths)) >= 6  # tapering visits most widths in between


def test_no_blob_wider_than_the_widest_vessel():
    # A 16x16 all-vessel block would mean drawing produced blobs instead of lines.
    for seed in range(3):
        m = make_vessel_sample(seed).mask.astype(np.int32)
        ii = np.pad(m, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
        k = 16
        block = ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]
        assert block.max() < k * k


def test_vessels_are_darker_than_the_background_and_outside_fov_is_dark():
    s = make_vessel_sample(1)
    green = s.image[..., 1].astype(np.float32)
    core = _shift_and(s.mask)
    ring = _shift_or(s.mask, 4) & ~_shift_or(s.mask, 1) & _shift_and(s.fov)
    assert green[core].mean() < green[ring].mean() - 10
    assert s.image[~s.fov].mean() < 10
    assert s.image[s.fov].mean() > 40


def test_write_dataset_layout_splits_and_exact_mask_files(tmp_path):
    train, val = write_synthetic_dataset(tmp_path, n=4, seed=7, size=128, val_fraction=0.25)
    assert len(train) == 3 and len(val) == 1 and not set(train) & set(val)
    assert (tmp_path / 'splits' / 'train.txt').read_text().split() == train
    assert (tmp_path / 'splits' / 'val.txt').read_text().split() == val
    for stem in train + val:
        mask = np.asarray(Image.open(tmp_path / 'masks' / f'{stem}.png'))
        assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
        assert Image.open(tmp_path / 'images' / f'{stem}.png').mode == 'RGB'
        assert (tmp_path / 'fov' / f'{stem}.png').is_file()
    # The same seed writes the same files; sample i does not depend on n.
    write_synthetic_dataset(tmp_path / 'again', n=2, seed=7, size=128, val_fraction=0.0)
    for stem in ('synth_00000', 'synth_00001'):
        a = np.asarray(Image.open(tmp_path / 'masks' / f'{stem}.png'))
        b = np.asarray(Image.open(tmp_path / 'again' / 'masks' / f'{stem}.png'))
        assert np.array_equal(a, b)
        a = np.asarray(Image.open(tmp_path / 'images' / f'{stem}.png'))
        b = np.asarray(Image.open(tmp_path / 'again' / 'images' / f'{stem}.png'))
        assert np.array_equal(a, b)


def test_cli(tmp_path, capsys):
    from tests._data_support import load_tool

    mod = load_tool('make_synthetic_vessels')
    assert mod.main([str(tmp_path), '--n', '3', '--seed', '1', '--size', '96', '--val-fraction', '0.34']) == 0
    assert len(list((tmp_path / 'images').glob('*.png'))) == 3
    assert len((tmp_path / 'splits' / 'val.txt').read_text().split()) == 1
    seq = tmp_path / 'sequences'
    assert mod.main([str(seq), '--videos', '2', '--frames', '3', '--label-every', '2', '--size', '64']) == 0
    assert sorted(p.name for p in (seq / 'masks').iterdir()) == [
        f'vid00{v}_f000{t}.png' for v in (0, 1) for t in (0, 2)
    ]
    assert len((seq / 'splits' / 'val.txt').read_text().split()) == 3  # one video, all its frames


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match='size'):
        make_vessel_sample(0, size=16)
    with pytest.raises(ValueError, match='val_fraction'):
        write_synthetic_dataset(tmp_path / 'out', n=2, seed=0, val_fraction=1.5)
    assert not (tmp_path / 'out').exists()

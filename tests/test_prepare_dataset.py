"""prepare_dataset on small fake trees in each published layout."""

import gzip
import io
import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.prepare import prepare_dataset
from projects.sa2va_vessel.datasets.readers import read_mask
from projects.sa2va_vessel.datasets.splits import groups_crossing
from tests._data_support import load_tool

H, W = 24, 32


def _img(path, seed, mode='RGB'):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = rng.integers(30, 220, size=(H, W, 3), dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def _mask(path, seed, fmt=None):
    """A sparse vessel mask: one thin row, one thin column and a short diagonal, all inside the
    FOV of `_fov` (~10 % of it, as on a real fundus), placed by `seed`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    r, c = 6 + seed % (H - 12), 8 + (3 * seed) % (W - 16)
    m[r, 6 : W - 6] = 255
    m[5 : H - 5, c] = 255
    d = np.arange(6)
    m[8 + d, 10 + d + seed % 6] = 255
    Image.fromarray(m).save(path, format=fmt)
    return m > 127


def _fov(path):
    """A fundus-like FOV: an ellipse filling most of the image."""
    path.parent.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:H, :W]
    disc = ((yy - (H - 1) / 2) / (H / 2 - 1)) ** 2 + ((xx - (W - 1) / 2) / (W / 2 - 1)) ** 2 <= 1
    Image.fromarray(disc.astype(np.uint8) * 255).save(path)


def _ppm_gz(path, arr):
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format='PPM')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(buf.getvalue()))


def _drive_tree(src, train_nums=range(21, 41), test_nums=range(1, 21)):
    for part, nums in (('training', train_nums), ('test', test_nums)):
        for n in nums:
            _img(src / part / 'images' / f'{n:02d}_{part}.tif', n)
            _mask(src / part / '1st_manual' / f'{n:02d}_manual1.gif', n)
            _fov(src / part / 'mask' / f'{n:02d}_{part}_mask.gif')


def _split(out, name):
    return (out / 'splits' / f'{name}.txt').read_text().split()


def test_drive(tmp_path):
    src = tmp_path / 'DRIVE'
    _drive_tree(src)
    man = prepare_dataset('DRIVE', src, tmp_path / 'out')
    out = tmp_path / 'out'
    assert man['n_samples'] == 40
    assert man['splits'] == {'all': 40, 'trainval': 20, 'train': 16, 'val': 4, 'test': 20}
    official_train = {f'drive_{n}' for n in range(21, 41)}
    train, val, test = (set(_split(out, n)) for n in ('train', 'val', 'test'))
    # Done-when of issue 13: disjoint, val inside the official training part, test = official test
    assert not (train & val) and not (train & test) and not (val & test)
    assert val <= official_train and train | val == official_train
    assert test == {f'drive_{n:02d}' for n in range(1, 21)}
    assert man['protocol']['name'] == 'drive' and man['protocol']['val_fraction'] == 0.2
    assert '# Protocol: drive' in (out / 'splits' / 'PROTOCOL.md').read_text()
    assert np.array_equal(
        read_mask(out / 'masks' / 'drive_21.png'), read_mask(src / 'training' / '1st_manual' / '21_manual1.gif')
    )
    assert (out / 'fov' / 'drive_01.png').is_file()
    rec = json.loads((out / 'manifest.json').read_text())['samples'][0]
    assert rec['size_wh'] == [W, H] and len(rec['image']['sha256']) == 64 and rec['fov']['source']
    assert Image.open(out / 'images' / 'drive_01.png').mode == 'RGB'
    # the whole folder passes the checks, val/test disjointness included
    assert check_dataset(out).n_errors == 0
    # seeded: another seed draws another val, still from the training part
    man2 = prepare_dataset('DRIVE', src, tmp_path / 'out2', seed=1)
    val2 = set(_split(tmp_path / 'out2', 'val'))
    assert val2 != val and val2 <= official_train and man2['splits']['val'] == 4


def _chase_tree(src):
    for child in range(1, 15):
        for eye in 'LR':
            _img(src / f'Image_{child:02d}{eye}.jpg', 2 * child + (eye == 'R'))
            _mask(src / f'Image_{child:02d}{eye}_1stHO.png', child)
            _mask(src / f'Image_{child:02d}{eye}_2ndHO.png', child + 1)


def test_chase_protocols_keep_children_together(tmp_path):
    src = tmp_path / 'CHASEDB1'
    _chase_tree(src)
    out = tmp_path / 'out'
    man = prepare_dataset('chase_db1', src, out, estimate_missing_fov=True)
    assert man['protocol']['name'] == 'chase_20_8'
    trainval, train, val, test = (_split(out, n) for n in ('trainval', 'train', 'val', 'test'))
    assert trainval == [f'chase_Image_{c:02d}{e}' for c in range(1, 11) for e in 'LR']
    assert test == [f'chase_Image_{c:02d}{e}' for c in range(11, 15) for e in 'LR']
    assert len(val) == 4 and set(val) <= set(trainval) and sorted(train + val) == trainval
    assert groups_crossing({'train': train, 'val': val, 'test': test}, r'Image_(\d+)') == {}
    assert check_dataset(out, r'Image_(\d+)').n_errors == 0
    assert (out / 'fov' / 'chase_Image_01L.png').is_file()
    man = prepare_dataset('chase_db1', src, tmp_path / 'o8', protocol='chase_8_20')
    assert man['protocol']['counts']['trainval'] == 8 and man['protocol']['counts']['test'] == 20
    # an incomplete copy would shift the published split: refused before anything is written
    (src / 'Image_14R.jpg').unlink()
    with pytest.raises(ValueError, match='complete set of 28 images, found 27'):
        prepare_dataset('chase_db1', src, tmp_path / 'o3')
    assert not (tmp_path / 'o3').exists()


def test_stare_10_10_and_leave_one_out(tmp_path):
    src = tmp_path / 'STARE'
    rng = np.random.default_rng(0)
    nums = [1, 2, 3, 4, 5, 44, 77, 81, 82, 139, 162, 163, 235, 236, 239, 240, 255, 291, 319, 324]
    for i in nums:
        _ppm_gz(src / 'stare-images' / f'im{i:04d}.ppm.gz', rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        lab = np.zeros((H, W, 3), np.uint8)
        lab[i % H] = 255
        _ppm_gz(src / 'labels-ah' / f'im{i:04d}.ah.ppm.gz', lab)
    out = tmp_path / 'out'
    man = prepare_dataset('stare', src, out)
    assert man['n_samples'] == 20 and man['protocol']['name'] == 'stare_10_10'
    assert _split(out, 'test') == [f'stare_im{i:04d}' for i in nums[10:]]
    assert set(_split(out, 'val')) <= set(_split(out, 'trainval')) == {f'stare_im{i:04d}' for i in nums[:10]}
    assert read_mask(out / 'masks' / 'stare_im0002.png')[2].all()
    loo = tmp_path / 'loo'
    man = prepare_dataset('stare', src, loo, protocol='stare_loo')
    assert man['protocol']['n_folds'] == 20
    tests = [_split(loo, f'fold{i}_test') for i in range(20)]
    assert all(len(t) == 1 for t in tests) and sorted(t[0] for t in tests) == _split(loo, 'all')
    for i in range(20):
        tv, val = set(_split(loo, f'fold{i}_trainval')), set(_split(loo, f'fold{i}_val'))
        assert len(tv) == 19 and val <= tv and not tv & set(tests[i]) and len(val) == 4
    assert _split(loo, 'test') == tests[0]
    assert check_dataset(loo).n_errors == 0


def test_hrf_15_30(tmp_path):
    hrf = tmp_path / 'HRF'
    for n in range(1, 16):
        for cls in ('h', 'g', 'dr'):
            key = f'{n:02d}_{cls}'
            _img(hrf / 'images' / f'{key}.jpg', n)
            _mask(hrf / 'manual1' / f'{key}.tif', n)
            _fov(hrf / 'mask' / f'{key}_mask.tif')
    out = tmp_path / 'o1'
    man = prepare_dataset('hrf', hrf, out)
    assert man['n_samples'] == 45 and man['protocol']['name'] == 'hrf_15_30'
    assert _split(out, 'trainval') == sorted(f'hrf_{n:02d}_{c}' for n in range(1, 6) for c in ('h', 'g', 'dr'))
    assert len(_split(out, 'test')) == 30 and len(_split(out, 'val')) == 3


def test_fives_xcad(tmp_path):
    fives = tmp_path / 'FIVES'
    for part in ('train', 'test'):
        for k in ('1_A', '2_N', '3_G', '4_D', '5_A'):
            _img(fives / part / 'Original' / f'{k}.png', 4)
            _mask(fives / part / 'Ground truth' / f'{k}.png', 5)
    man = prepare_dataset('fives', fives, tmp_path / 'o2')
    assert man['splits']['trainval'] == 5 and man['splits']['test'] == 5 and man['splits']['val'] == 1
    assert all(s.startswith('fives_train_') for s in _split(tmp_path / 'o2', 'val'))
    xcad = tmp_path / 'XCAD'
    for k in range(10):
        _img(xcad / 'test' / 'images' / f'{k:03d}.png', k, mode='L')
        _mask(xcad / 'test' / 'masks' / f'{k:03d}.png', k)
    _img(xcad / 'train' / 'trainA' / '999.png', 9)  # unpaired: ignored
    out = tmp_path / 'o3'
    man = prepare_dataset('xcad', xcad, out)
    assert man['n_samples'] == 10 and man['protocol']['n_folds'] == 5
    tests = [set(_split(out, f'fold{i}_test')) for i in range(5)]
    assert sorted(s for t in tests for s in t) == _split(out, 'all')
    assert all(set(_split(out, f'fold{i}_val')) <= set(_split(out, f'fold{i}_trainval')) for i in range(5))
    assert prepare_dataset('xcad', xcad, tmp_path / 'o4', k=2)['protocol']['n_folds'] == 2
    with pytest.raises(ValueError, match='not a k-fold protocol'):
        prepare_dataset('fives', fives, tmp_path / 'o5', k=3)
    with pytest.raises(KeyError, match="unknown protocol 'drive' for fives"):
        prepare_dataset('fives', fives, tmp_path / 'o5', protocol='drive')


def test_errors(tmp_path):
    with pytest.raises(KeyError, match='unknown data set'):
        prepare_dataset('nope', tmp_path, tmp_path / 'o')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='no DRIVE samples'):
        prepare_dataset('drive', tmp_path / 'empty', tmp_path / 'o')
    src = tmp_path / 'FIVES'
    _img(src / 'train' / 'Original' / '1_A.png', 0)
    (src / 'train' / 'Ground truth').mkdir(parents=True)
    Image.new('L', (5, 5)).save(src / 'train' / 'Ground truth' / '1_A.png')
    for part, k in (('train', '3_N'), ('test', '2_A')):  # enough for a val and a test part
        _img(src / part / 'Original' / f'{k}.png', 1)
        _mask(src / part / 'Ground truth' / f'{k}.png', 1)
    with pytest.raises(ValueError, match='Ground truth/1_A.png: mask size'):
        prepare_dataset('fives', src, tmp_path / 'o')


def test_cli(tmp_path, capsys):
    mod = load_tool('prepare_dataset')
    (tmp_path / 'empty').mkdir()
    assert mod.main(['drive', str(tmp_path / 'empty'), str(tmp_path / 'o')]) == 2
    assert 'no DRIVE samples' in capsys.readouterr().err
    src = tmp_path / 'DRIVE'
    _drive_tree(src)
    assert mod.main(['drive', str(src), str(tmp_path / 'o'), '--val-fraction', '0.25', '--seed', '3']) == 0
    assert 'protocol drive' in capsys.readouterr().out
    assert len(_split(tmp_path / 'o', 'val')) == 5


def test_make_splits_protocol_switch_and_custom(tmp_path, capsys):
    src = tmp_path / 'CHASEDB1'
    _chase_tree(src)
    out = tmp_path / 'out'
    prepare_dataset('chase_db1', src, out)
    mod = load_tool('make_splits')
    assert mod.main([str(out), '--protocol', 'chase_8_20']) == 0
    man = json.loads((out / 'manifest.json').read_text())
    assert man['protocol']['name'] == 'chase_8_20' and len(_split(out, 'test')) == 20
    # a custom re-draw of val comes from trainval, never from test
    test = set(_split(out, 'test'))
    assert mod.main([str(out), '--val-fraction', '0.5', '--seed', '4', '--group-regex', r'Image_(\d+)']) == 0
    assert set(_split(out, 'val')) <= set(_split(out, 'trainval')) and not set(_split(out, 'val')) & test
    assert 'make_splits (custom)' in (out / 'splits' / 'PROTOCOL.md').read_text()
    assert mod.main([str(out), '--from-split', 'all']) == 2
    assert 'test sample(s)' in capsys.readouterr().err
    assert mod.main([str(out), '--k', '3']) == 2
    assert 'fixed test split' in capsys.readouterr().err
    assert check_dataset(out, r'Image_(\d+)').n_errors == 0

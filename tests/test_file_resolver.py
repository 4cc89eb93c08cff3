"""One file resolver (datasets/files.py) for the checker, the dataset, prepare and predict:
case-insensitive extensions, duplicate stems refused naming both files, unpaired files listed."""

import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.check import check_dataset, quick_check
from projects.sa2va_vessel.datasets.files import DuplicateStemError, list_images, resolve_pairs, split_stem
from projects.sa2va_vessel.datasets.prepare import prepare_dataset
from projects.sa2va_vessel.datasets.readers import DataReadError
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._bad_masks import BAD_MASKS, canonical_set, fives_source, write_good, write_image
from tests._data_support import REPO_ROOT, load_tool, tiny_checkpoint_dir


def test_split_stem_rules():
    assert split_stem('s1.Png') == ('s1', '.Png')
    assert split_stem('im0001.ah.PPM.GZ') == ('im0001.ah', '.PPM.GZ')
    assert split_stem('notes.txt') is None and split_stem('.png') is None


def test_resolve_pairs_report(tmp_path):
    for sub in ('images', 'masks', 'fov'):
        (tmp_path / sub).mkdir()
    for stem in ('a', 'b', 'c'):
        write_image(tmp_path / 'images' / f'{stem}.PNG')
    write_good(tmp_path / 'masks' / 'a.Png')
    write_good(tmp_path / 'masks' / 'b.png')
    write_good(tmp_path / 'masks' / 'b.tif')  # duplicate stem
    write_good(tmp_path / 'masks' / 'z.png')  # mask without image
    write_good(tmp_path / 'fov' / 'y.png')  # FOV without image
    (tmp_path / 'images' / 'README.txt').write_text('x')
    (tmp_path / 'images' / '.DS_Store').write_text('x')
    r = resolve_pairs(tmp_path / 'images', tmp_path / 'masks', tmp_path / 'fov')
    assert list(r.pairs) == ['a'] and r.pairs['a'].mask.name == 'a.Png' and r.pairs['a'].fov is None
    assert [(d.stem, [p.name for p in d.paths]) for d in r.duplicates] == [('b', ['b.png', 'b.tif'])]
    assert sorted((u.path.name, u.kind, u.missing) for u in r.unpaired) == [
        ('a.PNG', 'image', 'fov'),
        ('c.PNG', 'image', 'mask'),
        ('y.png', 'fov', 'image'),
        ('z.png', 'mask', 'image'),
    ]
    assert [p.name for p in r.ignored] == ['README.txt']
    with pytest.raises(DuplicateStemError, match=r'masks/b\.png, .*masks/b\.tif'):
        r.raise_for_duplicates()
    assert '1 pair(s), 4 unpaired' in r.summary()


# --- duplicate stems: s1.png (empty) beside s1.tif (sound) -----------------------------------


@pytest.fixture
def duplicate_set(tmp_path):
    root = canonical_set(tmp_path / 'd')
    BAD_MASKS['all_zero'][0](root / 'masks' / 'good0.png')
    write_good(root / 'masks' / 'good0.tif')
    return root


def test_checker_reports_duplicate_stem_naming_both(duplicate_set):
    report = check_dataset(duplicate_set)
    dup = [i for i in report.issues if i.kind == 'duplicate stem']
    assert len(dup) == 1 and dup[0].severity == 'error'
    assert 'good0.png' in dup[0].detail and 'good0.tif' in dup[0].detail
    assert quick_check(duplicate_set).n_errors >= 1


def test_dataset_refuses_duplicate_stem_naming_both(duplicate_set):
    ckpt = str(tiny_checkpoint_dir())
    with pytest.raises(DataReadError, match=r'duplicate stem: .*good0\.png, .*good0\.tif'):
        VesselSegDataset(str(duplicate_set), 'train', ckpt)
    with pytest.raises(DuplicateStemError, match=r'good0\.png, .*good0\.tif'):
        VesselSegDataset(str(duplicate_set), 'train', ckpt, check_on_start=False)


def test_prepare_refuses_duplicate_stem_naming_both(tmp_path):
    src = fives_source(tmp_path / 'FIVES')
    write_good(src / 'train' / 'Ground truth' / '0_A.tif')
    with pytest.raises(DuplicateStemError, match=r'0_A\.png, .*0_A\.tif'):
        prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert not (tmp_path / 'out').exists()


def test_predict_lists_images_by_the_resolver(tmp_path):
    write_image(tmp_path / 'a.Png')
    write_image(tmp_path / 'b.JPG')
    (tmp_path / 'notes.txt').write_text('x')
    assert [p.name for p in list_images(tmp_path)] == ['a.Png', 'b.JPG']
    write_image(tmp_path / 'a.tif')
    with pytest.raises(DuplicateStemError, match=r'a\.Png, .*a\.tif'):
        list_images(tmp_path)
    src = (REPO_ROOT / 'projects' / 'sa2va_vessel' / 'evaluation' / 'predict.py').read_text()
    assert 'list_images(input_dir)' in src  # predict_folder lists its inputs through it


# --- case-insensitive extensions ----------------------------------------------------------------


def test_upper_case_extension_found_by_checker_and_dataset(tmp_path):
    root = canonical_set(tmp_path / 'd')
    (root / 'images' / 'good0.png').rename(root / 'images' / 'good0.Png')
    (root / 'masks' / 'good0.png').rename(root / 'masks' / 'good0.PNG')
    report = check_dataset(root)
    assert report.n_errors == 0 and report.n_samples == 2, report.table()
    ds = VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()))
    assert ds[0]['img_path'].endswith('good0.Png')
    assert ds.samples[0]['mask'].name == 'good0.PNG'
    src = fives_source(tmp_path / 'FIVES')  # and at preparation
    gt = src / 'train' / 'Ground truth'
    (gt / '0_A.png').rename(gt / '0_A.PNG')
    man = prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert man['n_samples'] == 3 and man['unpaired'] == []  # 2 train + 1 test
    assert (tmp_path / 'out' / 'masks' / 'fives_train_0_A.png').is_file()


def test_checker_and_dataset_agree_on_every_file(tmp_path):
    root = canonical_set(tmp_path / 'd', n_good=3)
    (root / 'masks' / 'good1.png').rename(root / 'masks' / 'good1.TIF.png')  # stem 'good1.TIF'
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / 'masks' / 'good2.JPEG')
    (root / 'masks' / 'good2.png').unlink()
    (root / 'splits' / 'train.txt').write_text('good0\ngood2\n')
    report = check_dataset(root)
    ds = VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()), check_on_start=False)
    checked = {i.file for i in report.issues if 'masks' in i.file}
    assert str(ds.samples[1]['mask']) in checked  # the file the loader reads is the one judged
    assert ('missing mask', str(root / 'images' / 'good1.png')) in {(i.kind, i.file) for i in report.issues}


# --- unpaired files in prepare's report and manifest -------------------------------------------


def test_prepare_lists_unpaired_files(tmp_path, capsys):
    src = fives_source(tmp_path / 'FIVES')
    write_image(src / 'train' / 'Original' / '5_N.png')  # image without mask
    write_good(src / 'train' / 'Ground truth' / '6_N.png')  # mask without image
    man = prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    expect = [
        {'file': 'train/Original/5_N.png', 'kind': 'image', 'missing': 'mask'},
        {'file': 'train/Ground truth/6_N.png', 'kind': 'mask', 'missing': 'image'},
    ]
    assert man['unpaired'] == expect and man['n_samples'] == 3  # 2 train + 1 test, paired
    assert json.loads((tmp_path / 'out' / 'manifest.json').read_text())['unpaired'] == expect
    assert load_tool('prepare_dataset').main(['fives', str(src), str(tmp_path / 'o2')]) == 0
    out = capsys.readouterr().out
    assert '2 unpaired source files' in out and '5_N.png: image without mask' in out


def test_drive_lists_test_images_without_manual_labels(tmp_path):
    src = tmp_path / 'DRIVE'
    for part, n in (('training', 21), ('test', 1)):
        (src / part / 'images').mkdir(parents=True)
        (src / part / '1st_manual').mkdir()
        write_image(src / part / 'images' / f'{n:02d}_{part}.tif')
    write_image(src / 'training' / 'images' / '23_training.tif')
    for n in (21, 22, 23):  # no image 22
        write_good(src / 'training' / '1st_manual' / f'{n}_manual1.gif')
    write_image(src / 'test' / 'images' / '02_test.tif')  # a labelled test image: the
    write_good(src / 'test' / '1st_manual' / '02_manual1.gif')  # protocol needs a test part
    man = prepare_dataset('drive', src, tmp_path / 'out', progress=False)
    assert man['n_samples'] == 3 and man['splits']['test'] == 1  # 21, 23 and test 02
    assert {(u['file'], u['missing']) for u in man['unpaired']} == {
        ('test/images/01_test.tif', 'mask'),
        ('training/1st_manual/22_manual1.gif', 'image'),
    }

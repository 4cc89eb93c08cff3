"""prepare_dataset writes all or nothing, never into a used folder, and images above PIL's pixel
limit get a named error (prepare, checker, dataset), never a raw DecompressionBombError."""

import pytest
from PIL import Image

from projects.sa2va_vessel.datasets import prepare as prep
from projects.sa2va_vessel.datasets.check import check_dataset, quick_check
from projects.sa2va_vessel.datasets.prepare import OutputNotEmptyError, prepare_dataset
from projects.sa2va_vessel.datasets.readers import DataReadError, ImageTooLargeError, read_image
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._bad_masks import BAD_MASKS, canonical_set, fives_source, write_image
from tests._data_support import load_tool, tiny_checkpoint_dir


def _cli():
    return load_tool('prepare_dataset').main


def _left_over(tmp_path):
    """Hidden siblings a run may have left (partial or old folders)."""
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith('.'))


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    src = fives_source(tmp_path / 'FIVES', n_good=3)
    calls = {'n': 0}
    real = prep.sha256_file

    def failing(path):
        calls['n'] += 1
        if calls['n'] > 3:  # after the first sample's files are written
            raise OSError('disk full (planted)')
        return real(path)

    monkeypatch.setattr(prep, 'sha256_file', failing)
    with pytest.raises(OSError, match='planted'):
        prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert calls['n'] > 3
    assert not (tmp_path / 'out').exists() and _left_over(tmp_path) == []


def test_unreadable_source_leaves_nothing(tmp_path):
    src = fives_source(tmp_path / 'FIVES', n_good=3)
    (src / 'train' / 'Original' / '2_A.png').write_bytes(b'junk')
    with pytest.raises(DataReadError, match='2_A.png'):
        prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert not (tmp_path / 'out').exists() and _left_over(tmp_path) == []


def test_non_empty_output_refused_and_overwrite_replaces_whole(tmp_path, capsys):
    src = fives_source(tmp_path / 'FIVES')
    out = tmp_path / 'out'
    (out / 'images').mkdir(parents=True)
    (out / 'images' / 'stale.png').write_bytes(b'old')
    (out / 'notes.txt').write_text('old')
    with pytest.raises(OutputNotEmptyError, match='not empty .*--overwrite'):
        prepare_dataset('fives', src, out, progress=False)
    assert (out / 'notes.txt').read_text() == 'old'  # untouched
    assert _cli()(['fives', str(src), str(out)]) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert _cli()(['fives', str(src), str(out), '--overwrite']) == 0
    assert sorted(p.name for p in out.iterdir()) == ['fov', 'images', 'manifest.json', 'masks', 'splits']
    assert sorted(p.name for p in (out / 'images').iterdir()) == [
        'fives_test_t0_A.png',
        'fives_train_0_A.png',
        'fives_train_1_A.png',
    ]
    assert _left_over(tmp_path) == []


def test_failed_overwrite_keeps_the_old_folder(tmp_path):
    good = fives_source(tmp_path / 'A')
    out = tmp_path / 'out'
    prepare_dataset('fives', good, out, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob('*'))
    bad = fives_source(tmp_path / 'B', BAD_MASKS['all_one'][0])
    with pytest.raises(DataReadError, match='all-vessel'):
        prepare_dataset('fives', bad, out, overwrite=True, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob('*')) == before and _left_over(tmp_path) == []


def test_second_set_into_the_same_folder_is_refused(tmp_path):
    a = fives_source(tmp_path / 'A', n_good=2)
    b = fives_source(tmp_path / 'B', n_good=3)
    out = tmp_path / 'out'
    prepare_dataset('fives', a, out, progress=False)
    with pytest.raises(OutputNotEmptyError):
        prepare_dataset('fives', b, out, progress=False)
    man = prepare_dataset('fives', b, out, overwrite=True, progress=False)
    on_disk = sorted(p.name for p in (out / 'images').iterdir())
    assert len(on_disk) == man['n_samples'] == 4  # B: 3 train + 1 test; nothing of A is left


def test_empty_existing_output_is_fine_and_source_is_protected(tmp_path):
    src = fives_source(tmp_path / 'FIVES')
    (tmp_path / 'out').mkdir()
    assert prepare_dataset('fives', src, tmp_path / 'out', progress=False)['n_samples'] == 3  # 2 train + 1 test
    with pytest.raises(ValueError, match='holds the source'):
        prepare_dataset('fives', src, tmp_path, overwrite=True, progress=False)
    assert (src / 'train' / 'Original' / '0_A.png').is_file()


# --- PIL's pixel limit --------------------------------------------------------------------------


@pytest.fixture(params=[600, 1000], ids=['above-2x-limit', 'between-1x-and-2x'])
def small_limit(request, monkeypatch):
    """32x40 = 1280 px: above twice 600 (PIL raises) and between 1000 and 2000 (PIL only warns)."""
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', request.param)
    return request.param


def test_reader_names_large_images(tmp_path, small_limit):
    write_image(tmp_path / 'big.png')
    with pytest.raises(ImageTooLargeError, match=r'big\.png: image too large .*--allow-large-images'):
        read_image(tmp_path / 'big.png')
    assert read_image(tmp_path / 'big.png', allow_large=True).shape == (32, 40, 3)
    assert Image.MAX_IMAGE_PIXELS == small_limit  # restored after allowing


def test_prepare_names_large_images(tmp_path, small_limit, capsys):
    src = fives_source(tmp_path / 'FIVES')
    with pytest.raises(ImageTooLargeError, match=r'0_A\.png: image too large'):
        prepare_dataset('fives', src, tmp_path / 'out', progress=False)
    assert not (tmp_path / 'out').exists()
    assert _cli()(['fives', str(src), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'image too large' in err and 'Traceback' not in err and 'DecompressionBomb' not in err
    assert _cli()(['fives', str(src), str(tmp_path / 'out'), '--allow-large-images']) == 0


def test_checker_and_dataset_name_large_images(tmp_path, small_limit):
    root = canonical_set(tmp_path / 'd')
    for report in (check_dataset(root), quick_check(root)):
        kinds = {i.kind for i in report.issues if i.severity == 'error'}
        assert kinds == {'image too large'}, report.table()
    assert check_dataset(root, allow_large_images=True).n_errors == 0
    ckpt = str(tiny_checkpoint_dir())
    with pytest.raises(DataReadError, match='image too large'):
        VesselSegDataset(str(root), 'train', ckpt)
    ds = VesselSegDataset(str(root), 'train', ckpt, allow_large_images=True)
    assert ds.load(0)['image'].shape == (32, 40, 3)

"""check_dataset finds each kind of problem; a clean synthetic set passes."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
from tests._data_support import load_tool


@pytest.fixture(scope='module')
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp('clean')
    write_synthetic_dataset(root, n=4, seed=0, size=64, val_fraction=0.5)
    return root


def _kinds(report):
    return {(i.kind, i.severity) for i in report.issues}


def test_clean_dataset_passes(clean):
    report = check_dataset(clean, group_regex=r'synth_(\d+)')
    assert report.n_errors == 0 and report.n_samples == 4, report.table()


def test_each_problem_is_found(clean, tmp_path):
    root = tmp_path / 'bad'
    shutil.copytree(clean, root)
    (root / 'images' / 'broken.png').write_bytes(b'junk')
    shutil.copy(root / 'images' / 'synth_00000.png', root / 'images' / 'copy.png')
    Image.new('L', (64, 64), 0).save(root / 'masks' / 'copy.png')  # empty mask
    Image.new('L', (10, 10), 255).save(root / 'masks' / 'synth_00001.png')  # size mismatch
    grey = (np.arange(64 * 64).reshape(64, 64) % 256).astype(np.uint8)
    Image.fromarray(grey).save(root / 'masks' / 'synth_00002.png')  # non-binary
    train = (root / 'splits' / 'train.txt').read_text().split()
    val = (root / 'splits' / 'val.txt').read_text().split()
    (root / 'splits' / 'val.txt').write_text('\n'.join(val + [train[0], 'ghost']) + '\n')
    (root / 'annotations').mkdir()
    (root / 'annotations' / 'a.json').write_text(
        json.dumps(
            {
                'imageWidth': 64,
                'imageHeight': 64,
                'shapes': [{'label': 'v', 'shape_type': 'polygon', 'points': [[1, 1], [2, 2]]}],
            }
        )
    )
    report = check_dataset(root)
    kinds = _kinds(report)
    for expected in [
        ('unreadable', 'error'),
        ('duplicate image', 'error'),
        ('empty mask', 'error'),
        ('size mismatch', 'error'),
        ('non-binary mask', 'error'),
        ('sample crosses splits', 'error'),
        ('split entry without files', 'error'),
        ('degenerate shape', 'error'),
        ('not in any split', 'warning'),
    ]:
        assert expected in kinds, (expected, report.table())
    assert 'broken.png' in report.table(100) and 'duplicate image' in report.table()


def test_groups_crossing_splits(clean, tmp_path):
    root = tmp_path / 'groups'
    shutil.copytree(clean, root)
    train = (root / 'splits' / 'train.txt').read_text().split()
    val = (root / 'splits' / 'val.txt').read_text().split()
    # Group = everything before the last digit: synth_0000x are all one group.
    report = check_dataset(root, group_regex=r'(synth_\d{4})')
    assert ('group crosses splits', 'error') in _kinds(report)
    assert check_dataset(root, group_regex=r'(synth_\d{5})').n_errors == 0
    assert train and val


def test_cli_exit_codes(clean, tmp_path, capsys):
    mod = load_tool('check_dataset')
    assert mod.main([str(clean)]) == 0
    assert '4 samples checked, 0 error(s)' in capsys.readouterr().out
    (tmp_path / 'images').mkdir()
    assert mod.main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert 'check' in out and 'severity' in out and 'no images' in out


def test_training_refuses_a_broken_data_set_at_start(tmp_path):
    """The dataset runs the header-level checks when built, with the checker's messages."""
    import numpy as np
    from PIL import Image

    from projects.sa2va_vessel.datasets.check import quick_check
    from projects.sa2va_vessel.datasets.readers import DataReadError
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from tests._data_support import tiny_checkpoint_dir

    root = tmp_path / 'data'
    write_synthetic_dataset(root, n=4, seed=0, size=96, val_fraction=0.25)
    assert quick_check(root).n_errors == 0
    VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()))  # a sound set builds
    stem = sorted((root / 'masks').iterdir())[0]
    Image.fromarray(np.zeros((50, 60), np.uint8)).save(stem)
    report = quick_check(root)
    assert [(i.kind, Path(i.file).name) for i in report.issues if i.severity == 'error'] == [
        ('size mismatch', stem.name)
    ]
    with pytest.raises(DataReadError, match=rf'size mismatch: .*{stem.name}'):
        VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()))

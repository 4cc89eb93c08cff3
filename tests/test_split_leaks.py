"""Val and test may never share an image: check_dataset, VesselSegDataset and the runner refuse."""

import shutil

import pytest

from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.splits import check_split_leaks, disjoint_pairs, split_role
from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._data_support import tiny_checkpoint_dir
from tests.toy_runs import toy_cfg


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp('leaks')
    write_synthetic_dataset(root, n=6, seed=0, size=64, val_fraction=0.34)
    return root


def _with_test(root, tmp_path, test_stems):
    out = tmp_path / 'set'
    shutil.copytree(root, out)
    (out / 'splits' / 'test.txt').write_text(''.join(s + '\n' for s in test_stems))
    return out


def _read(root, name):
    return (root / 'splits' / f'{name}.txt').read_text().split()


def test_roles_and_pairs():
    assert split_role('trainval') == ('', 'trainval') and split_role('fold3_val') == ('fold3_', 'val')
    assert split_role('all') is None and split_role('interval') is None
    pairs = disjoint_pairs(['train', 'val', 'test', 'trainval', 'all', 'fold0_val', 'fold0_test'])
    assert set(pairs) == {
        ('train', 'val'),
        ('train', 'test'),
        ('val', 'test'),
        ('trainval', 'test'),
        ('fold0_val', 'fold0_test'),
    }


def test_val_test_overlap_is_refused(root, tmp_path):
    train, val = _read(root, 'train'), _read(root, 'val')
    clean = _with_test(root, tmp_path / 'a', [])
    (clean / 'splits' / 'test.txt').unlink()
    assert check_dataset(clean).n_errors == 0
    leaky = _with_test(root, tmp_path / 'b', val)  # the old DRIVE/FIVES layout: val = test
    report = check_dataset(leaky)
    assert {i.detail for i in report.issues if i.kind == 'sample crosses splits'} == {
        f'{s} in val and test' for s in val
    }
    with pytest.raises(ValueError, match=r'val.txt and test.txt share 2 sample\(s\).*model selection'):
        check_split_leaks(leaky, 'val')
    with pytest.raises(ValueError, match='val.txt and test.txt share'):
        # even without the start-up checks, and when building the train set of that folder
        VesselSegDataset(str(leaky), 'train', str(tiny_checkpoint_dir()), check_on_start=False)
    fine = _with_test(root, tmp_path / 'c', [])
    (fine / 'splits' / 'test.txt').write_text('')
    assert len(VesselSegDataset(str(fine), 'val', str(tiny_checkpoint_dir()))) == len(val)
    # fold splits are checked per fold
    for name, stems in (('fold1_val', train[:1]), ('fold1_test', train[:1])):
        (fine / 'splits' / f'{name}.txt').write_text(stems[0] + '\n')
    with pytest.raises(ValueError, match='fold1_val.txt and fold1_test.txt'):
        check_split_leaks(fine, 'fold1_val')
    check_split_leaks(fine, 'val')  # other prefixes are not affected


def test_runner_refuses_validation_on_test(tmp_path):
    from projects.sa2va_vessel.engine import train

    for split in ('test', 'fold2_test'):
        cfg = toy_cfg(tmp_path, {'val_dataloader': dict(dataset=dict(type='ToyVesselDataset', split=split))})
        with pytest.raises(ValueError, match='must not read test images'):
            train(cfg)

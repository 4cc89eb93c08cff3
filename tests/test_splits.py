"""Group-aware splits: no group crosses, fractions and folds as asked, seeded."""

import pytest

from projects.sa2va_vessel.datasets.splits import (
    group_of,
    groups_crossing,
    kfold_splits,
    split_by_groups,
    write_split_files,
)
from tests._data_support import load_tool

CHASE = [f'chase_Image_{i:02d}{eye}' for i in range(1, 15) for eye in 'LR']
GROUP = r'Image_(\d+)'


def test_group_of():
    assert group_of('chase_Image_07L', GROUP) == '07'
    assert group_of('x', None) == 'x'
    with pytest.raises(ValueError, match="does not match sample 'other'"):
        group_of('other', GROUP)


def test_split_keeps_groups_together_and_is_seeded():
    train, val = split_by_groups(CHASE, 0.25, GROUP, seed=1)
    assert sorted(train + val) == sorted(CHASE) and not set(train) & set(val)
    assert groups_crossing({'train': train, 'val': val}, GROUP) == {}
    assert 6 <= len(val) <= 8 and len(val) % 2 == 0
    assert split_by_groups(CHASE, 0.25, GROUP, seed=1) == (train, val)
    assert split_by_groups(CHASE, 0.25, GROUP, seed=2) != (train, val)
    # Without the regex, eyes of one child may be separated: the check sees it.
    t2, v2 = split_by_groups(CHASE, 0.5, None, seed=0)
    assert groups_crossing({'train': t2, 'val': v2}, GROUP)


def test_kfold_covers_everything_once():
    folds = kfold_splits(CHASE, 4, GROUP, seed=0)
    vals = [v for _, v in folds]
    assert sorted(s for v in vals for s in v) == sorted(CHASE)
    for train, val in folds:
        assert groups_crossing({'train': train, 'val': val}, GROUP) == {}
    assert max(map(len, vals)) - min(map(len, vals)) <= 2
    with pytest.raises(ValueError, match='k must be'):
        kfold_splits(CHASE, 15, GROUP)


def test_cli(tmp_path):
    (tmp_path / 'images').mkdir()
    for s in CHASE:
        (tmp_path / 'images' / f'{s}.png').write_bytes(b'')
    mod = load_tool('make_splits')
    assert mod.main([str(tmp_path), '--group-regex', GROUP, '--k', '3']) == 0
    assert (tmp_path / 'splits' / 'fold2_val.txt').is_file()
    assert mod.main([str(tmp_path), '--group-regex', GROUP]) == 0
    train = (tmp_path / 'splits' / 'train.txt').read_text().split()
    val = (tmp_path / 'splits' / 'val.txt').read_text().split()
    assert groups_crossing({'t': train, 'v': val}, GROUP) == {} and len(train) + len(val) == 28
    assert mod.main([str(tmp_path), '--group-regex', 'nomatch']) == 2
    write_split_files(tmp_path, {'x': ['a']})
    assert (tmp_path / 'splits' / 'x.txt').read_text() == 'a\n'

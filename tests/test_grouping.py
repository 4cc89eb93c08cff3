"""Patients, videos and frame order: regex and CSV grouping, patient-disjoint splits, the checker."""

from __future__ import annotations

import json

import pytest

from projects.sa2va_vessel.datasets.grouping import (
    GroupingError,
    frame_order,
    groups_from_csv,
    groups_from_regex,
    kfold_by_patient,
    patients_crossing,
    split_by_patient,
    video_frames,
)
from projects.sa2va_vessel.datasets.synthetic_labelme import write_fake_labelme
from tests._data_support import load_tool
from tests.test_prepare_labelme import GROUP_RX, PREPARE

NAMES = [f'P{p}_V{v}_f{f}' for p in (1, 2, 3, 4, 5, 6) for v in (1, 2) for f in (1, 2, 10)]


def test_regex_attaches_patient_video_and_frame_and_keeps_frame_order():
    g = groups_from_regex(NAMES, GROUP_RX)
    assert g['P3_V2_f10'].patient == 'P3' and g['P3_V2_f10'].video == 'V2' and g['P3_V2_f10'].frame == 10
    assert frame_order(['P1_V1_f10', 'P1_V1_f2', 'P1_V1_f1'], g) == ['P1_V1_f1', 'P1_V1_f2', 'P1_V1_f10']
    # Without a frame group, frames are numbered in natural name order (f2 before f10).
    g2 = groups_from_regex(['P1_a_f10', 'P1_a_f2'], r'^(?P<patient>P\d+)_(?P<video>\w)_')
    assert g2['P1_a_f2'].frame == 0 and g2['P1_a_f10'].frame == 1


@pytest.mark.parametrize(
    'names,pattern,match',
    [
        (NAMES + ['other'], GROUP_RX, r"does not match 1 sample\(s\): 'other'"),
        (NAMES, r'^(P\d+)_', r'needs a named group \(\?P<patient>'),
        (['P1_V1_f01', 'P1_V1_f1'], GROUP_RX, "are both frame 1 of patient 'P1' video 'V1'"),
        (NAMES, r'^(?P<patient>P\d+)_(?P<frame>V\d)', 'is not a number'),
        (NAMES, r'(?P<patient>', 'invalid regex'),
    ],
)
def test_regex_errors(names, pattern, match):
    with pytest.raises(GroupingError, match=match):
        groups_from_regex(names, pattern)


def test_groups_csv(tmp_path):
    path = tmp_path / 'groups.csv'
    path.write_text('name,patient,video,frame\nA.png,p1,v1,3\nB,p1,v1,1\nC,p2,,\n')
    g = groups_from_csv(['A', 'B', 'C'], path)
    assert (g['A'].patient, g['A'].frame, g['C'].video, g['C'].frame) == ('p1', 3, '', 0)
    with pytest.raises(GroupingError, match=r"groups.csv: no row for 1 sample\(s\): 'D'"):
        groups_from_csv(['A', 'B', 'C', 'D'], path)
    path.write_text('file,who\nA,p1\n')
    with pytest.raises(GroupingError, match='needs a header with the columns name,patient'):
        groups_from_csv(['A'], path)


def test_patient_disjoint_split_and_folds():
    g = groups_from_regex(NAMES, GROUP_RX)
    patient_of = {s: x.patient for s, x in g.items()}
    train, val = split_by_patient(NAMES, patient_of, 0.34, seed=3)
    assert sorted(train + val) == sorted(NAMES) and val
    assert patients_crossing({'train': train, 'val': val}, g) == {}
    folds = kfold_by_patient(NAMES, patient_of, 3)
    assert sorted(s for _, v in folds for s in v) == sorted(NAMES)
    assert all(patients_crossing({'train': t, 'val': v}, g) == {} for t, v in folds)
    # Splitting per frame instead would put patients on both sides: the check sees it.
    assert patients_crossing({'train': NAMES[::2], 'val': NAMES[1::2]}, g)


def test_make_splits_keeps_patients_prints_counts_and_the_checker_catches_a_leak(tmp_path, capsys):
    src = tmp_path / 'src'
    write_fake_labelme(src, n_patients=4, videos=2, frames=3, size=64, foreign_every=0)
    out = tmp_path / 'out'
    groups_csv = tmp_path / 'g.csv'
    groups_csv.write_text(
        'name,patient,video,frame\n'
        + ''.join(
            f'P{p:02d}_V{v}_f{f:03d},pat{p},vid{v},{10 - f}\n' for p in range(1, 5) for v in (1, 2) for f in (1, 2, 3)
        )
    )
    assert PREPARE.main(['labelme', str(src), str(out), '--groups', str(groups_csv)]) == 0
    man = json.loads((out / 'manifest.json').read_text())
    assert {s['patient'] for s in man['samples']} == {'pat1', 'pat2', 'pat3', 'pat4'}
    # The CSV's frame numbers count down: the order follows them, not the names.
    assert video_frames(out)[('pat1', 'vid1')] == ['P01_V1_f003', 'P01_V1_f002', 'P01_V1_f001']
    capsys.readouterr()
    make_splits, check = load_tool('make_splits'), load_tool('check_dataset')
    assert make_splits.main([str(out), '--val-fraction', '0.25', '--seed', '1']) == 0
    printed = capsys.readouterr().out
    assert 'train: 18 frames, 3 patients, 6 videos' in printed and 'val: 6 frames, 1 patients, 2 videos' in printed
    val = (out / 'splits' / 'val.txt').read_text().split()
    assert video_frames(out, val) and all(len(v) == 3 for v in video_frames(out, val).values())
    assert check.main([str(out)]) == 0
    # A frame of a val patient moved into train: the checker reads the patients from the manifest.
    train = (out / 'splits' / 'train.txt').read_text().split()
    (out / 'splits' / 'train.txt').write_text('\n'.join(train + [val[0]]) + '\n')
    (out / 'splits' / 'val.txt').write_text('\n'.join(val[1:]) + '\n')
    assert check.main([str(out)]) == 1
    assert 'patient crosses splits' in capsys.readouterr().out

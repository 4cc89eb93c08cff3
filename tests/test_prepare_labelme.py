"""prepare_dataset.py labelme: shapes, rescaled coordinate frames, named errors, untouched sources."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.annotation_errors import (
    DegenerateShapeAnnotationError,
    EmptyMaskError,
    ShapeOutsideImageError,
    UnknownLabelError,
    UnsupportedShapeError,
)
from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.grouping import manifest_groups, patients_crossing
from projects.sa2va_vessel.datasets.labelme import rasterise_labelme
from projects.sa2va_vessel.datasets.readers import read_mask
from projects.sa2va_vessel.datasets.synthetic_labelme import write_fake_labelme
from tests._data_support import load_tool

GROUP_RX = r'^(?P<patient>P\d+)_(?P<video>V\d+)_f(?P<frame>\d+)'


PREPARE = load_tool('prepare_dataset')


def tree_hashes(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob('*'))
        if p.is_file()
    }


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_half_the_files_in_800px_frames_match_the_drawn_truth(tmp_path):
    src = tmp_path / 'src'
    truths = write_fake_labelme(src, n_patients=3, videos=2, frames=2, size=128, foreign_size=800, foreign_every=2)
    before = tree_hashes(src)
    rc = PREPARE.main(['labelme', str(src), str(tmp_path / 'out'), '--group-regex', GROUP_RX])
    assert rc == 0
    out = tmp_path / 'out'
    for name, truth in truths.items():
        assert dice(read_mask(out / 'masks' / f'{name}.png'), truth) >= 0.99, name
    man = json.loads((out / 'manifest.json').read_text())
    rescaled = {r['stem']: r['factor_xy'] for r in man['rescaled']}
    assert len(rescaled) == len(truths) // 2
    assert all(f == [0.16, 0.16] for f in rescaled.values())  # 128 / 800
    report = (out / 'prepare_report.txt').read_text()
    assert 'rescaled annotation frames: 6' in report and '800x800 -> factor x0.16' in report
    assert tree_hashes(src) == before, 'the source folder must not change'
    # The frames without a header change read as they are; the 800 px ones would be far off unread.
    foreign = next(iter(rescaled))
    doc = json.loads((src / f'{foreign}.json').read_text())
    unscaled = rasterise_labelme(doc, 'x', None).mask[:128, :128]
    assert dice(unscaled, truths[foreign]) < 0.5
    # Patients, videos and frames in the manifest; splits patient-disjoint; the checker agrees.
    groups = manifest_groups(out)
    assert groups['P02_V2_f002'].patient == 'P02' and groups['P02_V2_f002'].frame == 2
    splits = {n: (out / 'splits' / f'{n}.txt').read_text().split() for n in ('train', 'val')}
    assert splits['val'] and patients_crossing(splits, groups) == {}
    assert check_dataset(out, r'^(P\d+)').n_errors == 0
    assert (out / 'contact_sheet.png').is_file()


def _write(path: Path, shapes: list, size: int = 40, header: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(path.with_suffix('.png'))
    h = header or size
    path.write_text(
        json.dumps({'shapes': shapes, 'imagePath': path.with_suffix('.png').name, 'imageWidth': h, 'imageHeight': h})
    )


def _poly(label='vessel', pts=((5, 5), (30, 5), (30, 12), (5, 12))):
    return {'label': label, 'shape_type': 'polygon', 'points': [list(p) for p in pts]}


def test_shape_types_line_width_and_labels(tmp_path):
    doc = {
        'imageWidth': 40,
        'imageHeight': 40,
        'shapes': [
            {'label': 'vessel', 'shape_type': 'rectangle', 'points': [[2, 2], [8, 6]]},
            {'label': 'vessel', 'shape_type': 'circle', 'points': [[30, 30], [33, 30]]},
            {'label': 'artery', 'shape_type': 'line', 'points': [[2, 20], [20, 20]]},
            {'label': 'vessel', 'shape_type': 'linestrip', 'points': [[25, 2], [35, 2], [35, 12]]},
            {'label': 'catheter', 'shape_type': 'polygon', 'points': [[10, 30], [20, 30], [15, 38]]},
        ],
    }
    thin = rasterise_labelme(doc, 'a.json', labels=['vessel', 'artery'], ignore_labels=['catheter'], line_width=1)
    wide = rasterise_labelme(doc, 'a.json', labels=['vessel', 'artery'], ignore_labels=['catheter'], line_width=5)
    assert thin.n_shapes == 4 and thin.ignored == 1 and thin.labels == {'vessel': 3, 'artery': 1}
    assert thin.mask[2:7, 2:9].all() and thin.mask[30, 33] and not thin.mask[30, 34]
    assert thin.mask[20, 2:21].all() and not thin.mask[19, 10] and wide.mask[18:23, 10].all()
    assert wide.mask.sum() > thin.mask.sum() + 40
    assert not thin.mask[33, 15]  # catheter ignored
    with pytest.raises(UnknownLabelError, match=r"a.json: shape 4 .*'catheter'.*not in --labels"):
        rasterise_labelme(doc, 'a.json', labels=['vessel', 'artery'])


@pytest.mark.parametrize(
    'shape,header,error,kind',
    [
        (
            _poly(pts=((5, 5), (30, 5), (30, 12), (5, 12))),
            20,
            ShapeOutsideImageError,
            'outside image',
        ),  # 40px coords, header 20
        (_poly(pts=((5, 5), (30, 5), (5, 5))), None, DegenerateShapeAnnotationError, 'degenerate shape'),
        (_poly(pts=((1, 1), (5, 5), (9, 9), (3, 3))), None, DegenerateShapeAnnotationError, 'degenerate shape'),
        (_poly(label='bubble'), None, UnknownLabelError, 'unknown label'),
        (
            {'label': 'vessel', 'shape_type': 'point', 'points': [[3, 3]]},
            None,
            UnsupportedShapeError,
            'unsupported shape',
        ),
    ],
)
def test_each_bad_shape_has_its_named_error_or_a_counted_skip(tmp_path, capsys, shape, header, error, kind):
    src = tmp_path / 'src'
    _write(src / 'good.json', [_poly()])
    # The bad file keeps one good shape so that skipping the bad one still leaves a mask.
    good = _poly(pts=((2, 30), (12, 30), (12, 36))) if header is None else _poly(pts=((1, 14), (6, 14), (6, 18)))
    _write(src / 'bad.json', [good, shape], header=header)
    before = tree_hashes(src)
    args = ['labelme', str(src), '--labels', 'vessel']
    assert PREPARE.main(args[:2] + [str(tmp_path / 'o1')] + args[2:]) == 2
    err = capsys.readouterr().err
    assert f'{error.__name__}:' in err and 'bad.json: shape 1' in err
    assert PREPARE.main(args[:2] + [str(tmp_path / 'o2')] + args[2:] + ['--on-error', 'skip']) == 0
    man = json.loads((tmp_path / 'o2' / 'manifest.json').read_text())
    assert man['skipped']['shapes'] == {kind: 1}
    bad = next(r for r in man['samples'] if r['stem'] == 'bad')
    assert bad['skipped_shapes'][0]['kind'] == kind and bad['mask']['n_shapes'] == 1
    assert f'skipped shapes: 1 ({kind}: 1)' in (tmp_path / 'o2' / 'prepare_report.txt').read_text()
    assert tree_hashes(src) == before


def test_empty_samples_unpaired_images_and_output_folder_rules(tmp_path, capsys):
    src = tmp_path / 'src'
    _write(src / 'a.json', [_poly()])
    _write(src / 'b.json', [_poly(label='bubble')])  # only an unknown label: nothing left when skipped
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(src / 'lonely.png')
    assert PREPARE.main(['labelme', str(src), str(tmp_path / 'o'), '--labels', 'vessel', '--on-error', 'skip']) == 0
    man = json.loads((tmp_path / 'o' / 'manifest.json').read_text())
    assert man['n_samples'] == 1 and man['unpaired'] == ['lonely.png']
    assert [s['kind'] for s in man['skipped']['samples']] == ['empty mask']
    assert 'skipped samples: 1 (empty mask: 1)' in (tmp_path / 'o' / 'prepare_report.txt').read_text()
    capsys.readouterr()
    _write(src / 'c.json', [])
    with pytest.raises(EmptyMaskError, match="c.json: sample 'c': empty mask"):
        from projects.sa2va_vessel.datasets.prepare_annotated import find_labelme, prepare_annotated

        prepare_annotated(find_labelme(src, ['vessel', 'bubble']), tmp_path / 'o3')
    assert PREPARE.main(['labelme', str(src), str(tmp_path / 'o')]) == 2  # not empty
    assert 'not empty' in capsys.readouterr().err
    assert PREPARE.main(['labelme', str(src), str(src / 'inside')]) == 2
    assert 'outside the source' in capsys.readouterr().err

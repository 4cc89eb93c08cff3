"""prepare_dataset.py coco / arcade: polygons and both RLE forms as pycocotools rasterises them,
ARCADE's official splits and per-segment masks, the project's RLE codec against pycocotools."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from projects.sa2va_vessel.datasets.annotation_errors import (
    AnnotationError,
    ImageSizeMismatchError,
    ShapeOutsideImageError,
    UnknownLabelError,
)
from projects.sa2va_vessel.datasets.check import check_dataset
from projects.sa2va_vessel.datasets.coco_masks import segmentation_to_mask
from projects.sa2va_vessel.datasets.rasterize import counts_to_rle_string, rle_decode, rle_encode
from projects.sa2va_vessel.datasets.readers import read_mask
from tests.test_prepare_labelme import PREPARE, tree_hashes

H, W = 48, 64
# pycocotools 2.0.x on numpy 2 warns on every decode (its result is right).
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')


def _vessel(rng: np.random.Generator) -> np.ndarray:
    m = np.zeros((H, W), bool)
    r = int(rng.integers(5, H - 5))
    m[r : r + 2, 3 : W - 3] = True  # a 2 px horizontal vessel
    c = int(rng.integers(5, W - 5))
    m[4 : H - 4, c : c + 3] = True  # a 3 px vertical one
    return m


def _reference(seg, h=H, w=W) -> np.ndarray:
    """pycocotools' own path for one segmentation (what COCO API users get from annToMask)."""
    if isinstance(seg, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(seg, h, w))
    elif isinstance(seg['counts'], list):
        rle = coco_mask.frPyObjects(seg, h, w)
    else:
        rle = {'size': seg['size'], 'counts': seg['counts'].encode()}
    return coco_mask.decode(rle).astype(bool)


def test_project_rle_codec_matches_pycocotools():
    rng = np.random.default_rng(0)
    for i in range(20):
        m = rng.random((17, 23)) < (0.05 + 0.04 * i)
        m[0, 0] = bool(i % 2)  # both starts: on a vessel and on background
        ref = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
        ours = rle_encode(m)
        assert counts_to_rle_string(ours['counts']) == ref['counts'].decode()
        assert np.array_equal(rle_decode({'size': ref['size'], 'counts': ref['counts'].decode()}), m)
        assert np.array_equal(segmentation_to_mask(ours, m.shape), m)


def _annotations(rng, image_id, n_first):
    """One image's annotations: a polygon, an uncompressed RLE, a compressed RLE, a stenosis box."""
    poly = [[float(x) for x in rng.uniform([2, 2, 30, 2, 30, 20, 2, 20], [10, 10, 40, 10, 40, 30, 10, 30])]]
    unc = rle_encode(_vessel(rng))
    comp = coco_mask.encode(np.asfortranarray(_vessel(rng).astype(np.uint8)))
    comp = {'size': comp['size'], 'counts': comp['counts'].decode()}
    return [
        {'id': n_first, 'image_id': image_id, 'category_id': 1, 'segmentation': poly, 'iscrowd': 0},
        {'id': n_first + 1, 'image_id': image_id, 'category_id': 2, 'segmentation': unc, 'iscrowd': 1},
        {'id': n_first + 2, 'image_id': image_id, 'category_id': 3, 'segmentation': comp, 'iscrowd': 1},
        {
            'id': n_first + 3,
            'image_id': image_id,
            'category_id': 26,
            'segmentation': [[40, 30, 50, 30, 50, 40, 40, 40]],
            'iscrowd': 0,
        },
    ]


CATEGORIES = [{'id': 1, 'name': '1'}, {'id': 2, 'name': '5'}, {'id': 3, 'name': '9a'}, {'id': 26, 'name': 'stenosis'}]


def _fake_arcade(root: Path, sizes=(('train', 4), ('val', 2), ('test', 2))) -> dict:
    rng = np.random.default_rng(1)
    truth = {}
    for split, n in sizes:
        d = root / 'arcade' / 'syntax' / split
        (d / 'images').mkdir(parents=True)
        (d / 'annotations').mkdir()
        images, anns = [], []
        for i in range(1, n + 1):  # ARCADE numbers every split's images from 1
            Image.fromarray(rng.integers(0, 255, (H, W), dtype=np.uint8)).save(d / 'images' / f'{i}.png')
            images.append({'id': i, 'file_name': f'{i}.png', 'height': H, 'width': W})
            a = _annotations(rng, i, 10 * i)
            anns += a
            truth[f'arcade_{split}_{i}'] = {str(ann['category_id']): _reference(ann['segmentation']) for ann in a}
        (d / 'annotations' / f'{split}.json').write_text(
            json.dumps({'images': images, 'annotations': anns, 'categories': CATEGORIES})
        )
    return truth


def test_arcade_union_per_segment_masks_and_official_splits(tmp_path):
    truth = _fake_arcade(tmp_path / 'dl')
    before = tree_hashes(tmp_path / 'dl')
    out = tmp_path / 'out'
    assert PREPARE.main(['arcade', str(tmp_path / 'dl'), str(out), '--per-category']) == 0
    for stem, parts in truth.items():
        union = parts['1'] | parts['2'] | parts['3']  # stenosis (26) is no artery segment
        assert np.array_equal(read_mask(out / 'masks' / f'{stem}.png'), union), stem
        for cid, name in (('1', '1'), ('2', '5'), ('3', '9a')):
            assert np.array_equal(read_mask(out / 'segments' / name / f'{stem}.png'), parts[cid]), (stem, name)
        assert not (out / 'segments' / 'stenosis').exists()
    split = {n: (out / 'splits' / f'{n}.txt').read_text().split() for n in ('train', 'val', 'test')}
    assert split['train'] == [f'arcade_train_{i}' for i in range(1, 5)]
    assert split['val'] == ['arcade_val_1', 'arcade_val_2'] and split['test'] == ['arcade_test_1', 'arcade_test_2']
    man = json.loads((out / 'manifest.json').read_text())
    assert (
        man['samples'][0]['segments'] == ['1', '5', '9a']
        and man['samples'][0]['image']['source'] == 'arcade/syntax/train/images/1.png'
    )
    assert check_dataset(out).n_errors == 0
    assert tree_hashes(tmp_path / 'dl') == before
    # --categories picks segments; the union changes with it.
    assert PREPARE.main(['arcade', str(tmp_path / 'dl' / 'arcade'), str(tmp_path / 'o2'), '--categories', '5']) == 0
    assert np.array_equal(read_mask(tmp_path / 'o2' / 'masks' / 'arcade_val_2.png'), truth['arcade_val_2']['2'])


def _coco(tmp_path: Path, anns: list, size=(H, W)) -> tuple:
    img_dir = tmp_path / 'imgs'
    img_dir.mkdir(exist_ok=True)
    for i in (1, 2):
        Image.fromarray(np.full((H, W, 3), 90, np.uint8)).save(img_dir / f'im{i}.png')
    doc = {
        'images': [{'id': i, 'file_name': f'im{i}.png', 'height': size[0], 'width': size[1]} for i in (1, 2)],
        'annotations': anns,
        'categories': CATEGORIES,
    }
    path = tmp_path / 'coco.json'
    path.write_text(json.dumps(doc))
    return path, img_dir


def test_coco_command_matches_pycocotools(tmp_path):
    rng = np.random.default_rng(3)
    anns = _annotations(rng, 1, 1) + _annotations(rng, 2, 10)
    path, imgs = _coco(tmp_path, anns)
    assert PREPARE.main(['coco', str(path), str(imgs), str(tmp_path / 'out'), '--categories', '1,5,9a']) == 0
    for i in (1, 2):
        ref = np.zeros((H, W), bool)
        for a in anns:
            if a['image_id'] == i and a['category_id'] != 26:
                ref |= _reference(a['segmentation'])
        assert np.array_equal(read_mask(tmp_path / 'out' / 'masks' / f'im{i}.png'), ref)


@pytest.mark.parametrize(
    'change,error,match',
    [
        (lambda a, d: a[0].update(segmentation=[[-20, 2, 30, 2, 30, 20]]), ShapeOutsideImageError, 'outside the 64x48'),
        (lambda a, d: a[1]['segmentation']['counts'].append(5), AnnotationError, 'sum to H\\*W'),
        (lambda a, d: a[2]['segmentation'].update(size=[10, 10]), AnnotationError, 'RLE size'),
        (lambda a, d: a[0].update(category_id=99), UnknownLabelError, 'unknown category_id 99'),
        (lambda a, d: d.update(size=(H + 1, W)), ImageSizeMismatchError, 'is 64x48 but the file says 64x49'),
    ],
)
def test_coco_bad_inputs_have_named_errors(tmp_path, capsys, change, error, match):
    anns = _annotations(np.random.default_rng(4), 1, 1) + _annotations(np.random.default_rng(5), 2, 10)
    opts = {'size': (H, W)}
    change(anns, opts)
    path, imgs = _coco(tmp_path, anns, opts['size'])
    if error is ImageSizeMismatchError:
        for a in anns:  # the json now says H+1; RLE sizes would fail first, so polygons only
            if isinstance(a['segmentation'], dict):
                a['segmentation'] = [[2, 2, 20, 2, 20, 9]]
        path.write_text(json.dumps({**json.loads(path.read_text()), 'annotations': anns}))
    assert PREPARE.main(['coco', str(path), str(imgs), str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert f'{error.__name__}:' in err and re.search(match, err), err
    if error is not ImageSizeMismatchError:  # a shape-level problem: skip mode counts it
        assert PREPARE.main(['coco', str(path), str(imgs), str(tmp_path / 'o2'), '--on-error', 'skip']) == 0
        man = json.loads((tmp_path / 'o2' / 'manifest.json').read_text())
        assert sum(man['skipped']['shapes'].values()) == 1

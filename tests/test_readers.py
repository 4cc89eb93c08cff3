"""Readers: image/mask files (bit depths, palettes, binarisation rule) and annotation files."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.datasets.rasterize import rle_encode
from projects.sa2va_vessel.datasets.readers import (
    DataReadError,
    binarise,
    read_coco,
    read_image,
    read_labelme,
    read_mask,
    read_sa2va_annotations,
    sa2va_record_mask,
)


def _ref_mask(h=20, w=30):
    m = np.zeros((h, w), bool)
    m[5:9, 3:25] = True
    m[2:18, 12:14] = True
    return m


@pytest.mark.parametrize('ext', ['png', 'gif', 'tif', 'bmp'])
def test_mask_formats_8bit_and_palette(tmp_path, ext):
    m = _ref_mask()
    Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / f'm.{ext}')
    assert np.array_equal(read_mask(tmp_path / f'm.{ext}'), m)


def test_binarisation_rule(tmp_path):
    m = _ref_mask()
    grey = np.where(m, 200, 100).astype(np.uint8)  # 100 <= 127 -> background
    assert np.array_equal(binarise(grey), m)
    assert np.array_equal(binarise(m.astype(np.uint8)), m)  # 0/1 label map
    Image.fromarray(m.astype(np.uint8)).save(tmp_path / 'lab.png')
    assert np.array_equal(read_mask(tmp_path / 'lab.png'), m)
    Image.fromarray((m * 60000).astype(np.uint16)).save(tmp_path / 'm16.png')
    assert Image.open(tmp_path / 'm16.png').mode.startswith('I')
    assert np.array_equal(read_mask(tmp_path / 'm16.png'), m)
    rgb = np.zeros((*m.shape, 3), np.uint8)
    rgb[m] = (255, 0, 0)  # a red label counts
    Image.fromarray(rgb).save(tmp_path / 'rgb.png')
    assert np.array_equal(read_mask(tmp_path / 'rgb.png'), m)
    Image.fromarray(m).save(tmp_path / 'one.png')  # mode '1'
    assert np.array_equal(read_mask(tmp_path / 'one.png'), m)
    p = Image.fromarray(m.astype(np.uint8), mode='L').convert('P')
    p.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)  # index 1 -> white
    p.save(tmp_path / 'pal.png')
    assert np.array_equal(read_mask(tmp_path / 'pal.png'), m)


def test_images_16bit_grey_palette_rgba(tmp_path):
    a16 = (np.arange(20 * 30).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / 'a.tif')
    img = read_image(tmp_path / 'a.tif')
    assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    assert np.array_equal(img[..., 0], np.round(a16 / 257.0).astype(np.uint8))
    Image.new('RGBA', (7, 5), (10, 20, 30, 40)).save(tmp_path / 'b.png')
    assert read_image(tmp_path / 'b.png')[0, 0].tolist() == [10, 20, 30]
    Image.new('L', (7, 5), 99).save(tmp_path / 'c.jpg', quality=100)
    assert read_image(tmp_path / 'c.jpg').shape == (5, 7, 3)


def test_errors_name_the_file(tmp_path):
    (tmp_path / 'broken.png').write_bytes(b'not an image')
    with pytest.raises(DataReadError, match='broken.png'):
        read_image(tmp_path / 'broken.png')
    with pytest.raises(DataReadError, match='missing.png: file not found'):
        read_mask(tmp_path / 'missing.png')


def _labelme(tmp_path, shapes, w=40, h=20):
    path = tmp_path / 'a.json'
    path.write_text(json.dumps({'imageWidth': w, 'imageHeight': h, 'imagePath': 'a.png', 'shapes': shapes}))
    return path


def test_labelme_shapes_labels_and_rescaling(tmp_path):
    shapes = [
        {'label': 'vessel', 'shape_type': 'polygon', 'points': [[2, 2], [10, 2], [10, 6], [2, 6]]},
        {'label': 'vessel', 'shape_type': 'rectangle', 'points': [[30, 10], [20, 15]]},
        {'label': 'vessel', 'shape_type': 'circle', 'points': [[5, 14], [7, 14]]},
        {'label': 'disc', 'shape_type': 'polygon', 'points': [[30, 1], [38, 1], [38, 5]]},
    ]
    path = _labelme(tmp_path, shapes)
    res = read_labelme(path, labels=['vessel'])
    assert res.n_shapes == 3 and res.mask.shape == (20, 40)
    assert res.mask[2:7, 2:11].all() and not res.mask[1, 2] and not res.mask[2, 11]
    assert res.mask[10:16, 20:31].all()
    assert res.mask[14, 5] and res.mask[14, 7] and not res.mask[14, 8]
    assert not res.mask[2, 36]  # 'disc' filtered out
    assert read_labelme(path).mask[2, 36]
    # The same annotation on an image twice as large: coordinates scale with it.
    big = read_labelme(path, image_hw=(40, 80), labels=['vessel'])
    assert big.mask.shape == (40, 80) and big.mask[4:13, 4:21].all() and not big.mask[4, 23]


def test_labelme_mask_shape(tmp_path):
    patch = np.zeros((4, 6), np.uint8)
    patch[1:3, 1:5] = 255
    buf = io.BytesIO()
    Image.fromarray(patch).save(buf, format='PNG')
    shapes = [
        {
            'label': 'v',
            'shape_type': 'mask',
            'points': [[10, 5], [15, 8]],
            'mask': base64.b64encode(buf.getvalue()).decode(),
        }
    ]
    m = read_labelme(_labelme(tmp_path, shapes)).mask
    assert m.sum() == 8 and m[6:8, 11:15].all()


def test_labelme_degenerate_strict_and_lenient(tmp_path):
    shapes = [
        {'label': 'v', 'shape_type': 'polygon', 'points': [[1, 1], [5, 5], [9, 9]]},  # collinear
        {'label': 'v', 'shape_type': 'polygon', 'points': [[1, 1], [8, 1], [8, 8]]},
        {'label': 'v', 'shape_type': 'point', 'points': [[1, 1]]},
    ]  # no area: unsupported
    path = _labelme(tmp_path, shapes)
    with pytest.raises(DataReadError, match=r'a.json: shape 0 \(polygon'):
        read_labelme(path)
    res = read_labelme(path, strict=False)
    assert res.n_shapes == 1 and len(res.skipped) == 2 and 'shape 2 (point' in res.skipped[1]
    (tmp_path / 'bad.json').write_text('{')
    with pytest.raises(DataReadError, match='bad.json: invalid JSON'):
        read_labelme(tmp_path / 'bad.json')


def test_coco_polygons_and_rle(tmp_path):
    m = _ref_mask()
    rle_list = rle_encode(m)
    doc = {
        'images': [
            {'id': 1, 'file_name': 'a.png', 'height': 20, 'width': 30},
            {'id': 2, 'file_name': 'b.png', 'height': 20, 'width': 30},
        ],
        'categories': [{'id': 1, 'name': 'vessel'}, {'id': 2, 'name': 'other'}],
        'annotations': [
            {'id': 1, 'image_id': 1, 'category_id': 1, 'segmentation': [[0, 0, 4, 0, 4, 3, 0, 3]]},
            {'id': 2, 'image_id': 2, 'category_id': 1, 'segmentation': rle_list, 'iscrowd': 1},
            {'id': 3, 'image_id': 2, 'category_id': 2, 'segmentation': [[20, 15, 29, 15, 29, 19]]},
        ],
    }
    (tmp_path / 'coco.json').write_text(json.dumps(doc))
    out = read_coco(tmp_path / 'coco.json', categories=['vessel'])
    # pycocotools' fill (the COCO convention): the 4 x 3 box covers 4 x 3 pixels, not PIL's 5 x 4.
    assert out['a.png'].mask[0:3, 0:4].all() and out['a.png'].mask.sum() == 12
    assert np.array_equal(out['b.png'].mask, m)


def test_sa2va_annotations(tmp_path):
    doc = [
        {
            'image': 'x.jpg',
            'mask': [[[1, 1, 8, 1, 8, 6, 1, 6]], [[20, 2, 28, 2, 28, 9]]],
            'text': ['blood vessel', 'optic disc'],
        }
    ]
    (tmp_path / 'annotations.json').write_text(json.dumps(doc))
    (rec,) = read_sa2va_annotations(tmp_path / 'annotations.json')
    assert rec.image == 'x.jpg' and rec.texts == ['blood vessel', 'optic disc']
    only = sa2va_record_mask(rec, (12, 30), texts=['blood vessel'])
    assert only.n_shapes == 1 and only.mask[1:7, 1:9].all() and not only.mask[3, 25]
    assert sa2va_record_mask(rec, (12, 30)).mask[3, 25]
    (tmp_path / 'bad.json').write_text(json.dumps([{'image': 'y.jpg', 'mask': [[]], 'text': ['a', 'b']}]))
    with pytest.raises(DataReadError, match='bad.json: record 0'):
        read_sa2va_annotations(tmp_path / 'bad.json')

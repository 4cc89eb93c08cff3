"""Polygon/RLE rasterisation, including our own COCO RLE string codec."""

import numpy as np
import pytest

from projects.sa2va_vessel.datasets.rasterize import (
    DegenerateShapeError,
    counts_to_rle_string,
    polygon_area,
    polygon_mask,
    rle_decode,
    rle_encode,
    rle_string_to_counts,
    segmentation_mask,
)


def test_rle_string_known_values():
    # Values < 16 fit one char (value + 48); the 4th count is stored as a difference to the 2nd.
    assert rle_string_to_counts('231') == [2, 3, 1]
    assert rle_string_to_counts('2314') == [2, 3, 1, 7]
    assert counts_to_rle_string([2, 3, 1, 7]) == '2314'


def test_rle_round_trips_on_random_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(1, 40, size=2)
        m = rng.random((h, w)) < rng.random()
        rle = rle_encode(m)
        assert sum(rle['counts']) == h * w
        assert np.array_equal(rle_decode(rle), m)
        s = counts_to_rle_string(rle['counts'])
        assert rle_string_to_counts(s) == rle['counts']
        assert np.array_equal(rle_decode({'size': rle['size'], 'counts': s}), m)


def test_rle_is_column_major_and_validated():
    m = np.array([[0, 1], [0, 0]], bool)
    assert rle_encode(m)['counts'] == [2, 1, 1]  # down the first column, then the second
    with pytest.raises(ValueError, match='expected H\\*W'):
        rle_decode({'size': [2, 2], 'counts': [1, 1]})


def test_polygons():
    assert polygon_area([(0, 0), (4, 0), (4, 3)]) == 6.0
    m = polygon_mask([(1, 1), (5, 1), (5, 4), (1, 4)], (6, 8))
    assert m.sum() == 20 and m[1:5, 1:6].all()
    with pytest.raises(DegenerateShapeError):
        polygon_mask([(0, 0), (1, 1)], (4, 4))
    with pytest.raises(DegenerateShapeError):
        polygon_mask([(0, 0), (1, 1), (2, 2)], (4, 4))
    seg = segmentation_mask([[0, 0, 2, 0, 2, 2, 0, 2], [5, 5, 7, 5, 7, 7]], (8, 8))
    assert seg[0:3, 0:3].all() and seg[5, 6]


BOW_TIE = [(2, 2), (12, 12), (12, 2), (2, 12)]  # symmetric: the signed shoelace sum is 0


def test_bow_tie_polygon_is_not_zero_area():
    from projects.sa2va_vessel.datasets.rasterize import enclosed_area

    assert polygon_area(BOW_TIE) == 0.0  # why the old check rejected it
    assert enclosed_area(BOW_TIE) == pytest.approx(50.0)  # two triangles of 25
    assert enclosed_area([(0, 0), (4, 0), (4, 3)]) == pytest.approx(6.0)
    assert enclosed_area([(0, 0), (2, 0), (2, 2), (2, 0)]) == 0.0  # out and back: no area
    m = polygon_mask(BOW_TIE, (16, 16))
    assert m[7, 3] and m[7, 11] and not m[2, 7] and not m[12, 7]  # the left and right lobes
    with pytest.raises(DegenerateShapeError):
        polygon_mask([(0, 0), (2, 0), (2, 2), (2, 0)], (4, 4))


def test_bow_tie_in_labelme_and_the_checker(tmp_path):
    import json

    from projects.sa2va_vessel.datasets.check import check_dataset
    from projects.sa2va_vessel.datasets.readers import read_labelme
    from tests._bad_masks import canonical_set

    doc = {
        'imageWidth': 16,
        'imageHeight': 16,
        'shapes': [{'label': 'vessel', 'shape_type': 'polygon', 'points': [list(p) for p in BOW_TIE]}],
    }
    (tmp_path / 'a.json').write_text(json.dumps(doc))
    res = read_labelme(tmp_path / 'a.json')  # strict: would raise on a degenerate shape
    assert res.n_shapes == 1 and res.mask.sum() > 40
    root = canonical_set(tmp_path / 'd')
    (root / 'annotations').mkdir()
    (root / 'annotations' / 'a.json').write_text(json.dumps(doc))
    assert not [i for i in check_dataset(root).issues if i.kind == 'degenerate shape']

"""tools/predict.py: sliding windows with overlap blending, and the command line end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from projects.sa2va_vessel.evaluation.predict import (
    read_probability,
    sliding_window_predict,
    window_starts,
    window_weights,
)


@pytest.mark.parametrize(
    'length,window,overlap',
    [(3504, 1024, 0.25), (2336, 1024, 0.25), (2048, 1024, 0.25), (1000, 1024, 0.5), (1500, 512, 0.0), (700, 256, 0.6)],
)
def test_windows_cover_with_overlap(length, window, overlap):
    starts = window_starts(length, window, overlap)
    assert starts[0] == 0 and starts[-1] == max(0, length - window)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s : s + window] = True
    assert covered.all()
    for a, b in zip(starts, starts[1:]):
        assert a + window - b >= int(overlap * window)  # neighbours share the overlap


def test_blending_weights_are_a_partition_of_unity():
    h, w = 700, 1100
    total = np.zeros((h, w))
    parts = window_weights(h, w, 256, 0.25)
    for y0, x0, wh, ww, wgt in parts:
        assert wgt.shape == (wh, ww) and (wgt > 0).all()
        total[y0 : y0 + wh, x0 : x0 + ww] += wgt
    assert (total > 0).all()
    # normalised weights w_i / sum_j w_j sum to 1 at every pixel
    norm = np.zeros((h, w))
    for y0, x0, wh, ww, wgt in parts:
        norm[y0 : y0 + wh, x0 : x0 + ww] += wgt / total[y0 : y0 + wh, x0 : x0 + ww]
    np.testing.assert_allclose(norm, 1.0, atol=1e-12)
    # full weight at the image border, where no other window can help
    y0, x0, wh, ww, wgt = parts[0]
    assert wgt[0, 0] == 1.0


def test_constant_and_pixelwise_models_are_unchanged_by_windows():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (600, 900, 3), dtype=np.uint8)
    const, n = sliding_window_predict(image, lambda im: np.full(im.shape[:2], 0.3), 256, 0.25)
    assert n > 1
    np.testing.assert_allclose(const, 0.3, atol=1e-6)

    def pixelwise(im):  # depends on the pixel only: windows must not matter anywhere
        return im[..., 0].astype(np.float64) / 255.0

    tiled, _ = sliding_window_predict(image, pixelwise, 256, 0.25)
    np.testing.assert_allclose(tiled, pixelwise(image), atol=1e-6)
    whole, n = sliding_window_predict(image, pixelwise, 1024, 0.25)
    assert n == 1


def test_predict_cli_on_exported_model(tiny_checkpoint, tmp_path):
    from projects.sa2va_vessel.evaluation.cli import predict_main

    rng = np.random.default_rng(1)
    src = tmp_path / 'in'
    src.mkdir()
    Image.fromarray(rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)).save(src / 'big.png')
    Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(src / 'small.jpg')
    out = tmp_path / 'out'
    predict_main(
        [str(tiny_checkpoint), str(src), str(out), '--window', '128', '--overlap', '0.25', '--threshold', '0.5']
    )
    manifest = json.loads((out / 'predictions.json').read_text())
    windows = {e['image'].split('/')[-1]: e['windows'] for e in manifest['images']}
    assert windows == {'big.png': 3 * 2, 'small.jpg': 1}
    for stem, shape in (('big', (192, 256)), ('small', (96, 80))):
        prob = read_probability(out / 'prob' / f'{stem}.png')
        mask = np.asarray(Image.open(out / 'mask' / f'{stem}.png'))
        assert prob.shape == mask.shape == shape
        assert 0.0 <= prob.min() and prob.max() <= 1.0
        assert set(np.unique(mask)) <= {0, 255}
        # 16-bit quantisation may flip only pixels within 1/65535 of the threshold
        agree = (mask > 0) == (prob >= 0.5)
        assert agree.mean() > 0.999

"""One sample builder: inference on a bare image builds exactly the item validation built."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.evaluation.inference import ImageSampleBuilder

SAME = (
    'pixel_values',
    'g_pixel_values',
    'input_ids',
    'labels',
    'n_tiles',
    'ori_size',
    'pad_token_id',
    'question',
    'answer',
    'img_path',
    'image_grid_thw',
    'position_ids',
)


def _assert_same_inputs(item: dict, built: dict) -> None:
    assert set(built) == set(item)
    for key in SAME:
        if key not in item:
            continue
        a, b = item[key], built[key]
        if isinstance(a, torch.Tensor):
            assert a.dtype == b.dtype and torch.equal(a, b), key
        else:
            assert a == b, key
    # only what inference cannot know differs: the ground truth and the feature-cache key
    assert not built['masks'].any() and built['masks'].shape == item['masks'].shape
    assert built['frozen_feature_key'] is None and item['frozen_feature_key'] == item['img_path']


def _check(checkpoint: Path, data: Path) -> None:
    dataset = VesselSegDataset(str(data), 'val', str(checkpoint), random_question=False)
    builder = ImageSampleBuilder(str(checkpoint))
    for index in range(len(dataset)):
        item = dataset[index]
        image = dataset.load(index)['image']
        _assert_same_inputs(item, builder(image, name=item['img_path']))


def test_inference_item_equals_the_validation_item(tiny_checkpoint: Path, synthetic_vessels: Path) -> None:
    _check(tiny_checkpoint, synthetic_vessels)


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl'])
def test_qwen_inference_item_equals_the_validation_item(preset: str, synthetic_vessels: Path, tmp_path: Path) -> None:
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va

    checkpoint = write_random_sa2va(tmp_path / 'ckpt', preset=preset, seed=0)
    _check(checkpoint, synthetic_vessels)


def test_different_image_gives_different_pixels(tiny_checkpoint: Path) -> None:
    builder = ImageSampleBuilder(str(tiny_checkpoint), max_dynamic_patch=1)
    rng = np.random.default_rng(0)
    a = builder(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    b = builder(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    assert a['pixel_values'].dtype == torch.uint8 and not torch.equal(a['pixel_values'], b['pixel_values'])
    assert a['ori_size'] == (64, 80) and torch.equal(a['input_ids'], b['input_ids'])

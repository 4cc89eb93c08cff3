"""vessel_collate: the batch of docs/ARCHITECTURE.md (shapes, right padding, data_samples)."""

import numpy as np
import pytest
import torch

from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.conversation import IGNORE_INDEX


def _item(n_tokens, n_tiles, hw, pad=7, fov=True):
    ids = torch.arange(100, 100 + n_tokens)
    labels = ids.clone()
    labels[: n_tokens // 2] = IGNORE_INDEX
    return {
        'pixel_values': torch.randn(n_tiles, 3, 448, 448),
        'g_pixel_values': torch.randn(3, 1024, 1024),
        'input_ids': ids,
        'labels': labels,
        'masks': torch.zeros(1, *hw, dtype=torch.bool),
        'n_tiles': n_tiles,
        'img_path': f'/x/{n_tokens}.png',
        'ori_size': hw,
        'fov': np.ones(hw, bool) if fov else None,
        'pad_token_id': pad,
    }


def test_shapes_padding_and_samples():
    a, b = _item(10, 1, (30, 40)), _item(6, 3, (50, 20), fov=False)
    batch = vessel_collate([a, b])
    data, samples = batch['data'], batch['data_samples']
    assert set(data) == {
        'pixel_values',
        'g_pixel_values',
        'input_ids',
        'labels',
        'attention_mask',
        'position_ids',
        'masks',
    }
    assert data['pixel_values'].shape == (4, 3, 448, 448)
    assert torch.equal(data['pixel_values'][1:], b['pixel_values'])
    assert data['g_pixel_values'].shape == (2, 3, 1024, 1024)
    assert data['input_ids'].shape == data['labels'].shape == (2, 10)
    assert data['input_ids'].dtype == data['labels'].dtype == data['position_ids'].dtype == torch.long
    assert data['attention_mask'].dtype == torch.bool
    assert torch.equal(data['input_ids'][1, 6:], torch.full((4,), 7))
    assert torch.equal(data['labels'][1, 6:], torch.full((4,), IGNORE_INDEX))
    assert data['attention_mask'].sum(1).tolist() == [10, 6]
    assert data['position_ids'][0].tolist() == list(range(10))
    assert data['position_ids'][1].tolist() == list(range(6)) + [0] * 4
    assert [tuple(m.shape) for m in data['masks']] == [(1, 30, 40), (1, 50, 20)]
    assert [s['ori_size'] for s in samples] == [(30, 40), (50, 20)]
    assert samples[0]['mask'].dtype == bool and samples[0]['mask'].shape == (1, 30, 40)
    assert samples[0]['fov'].shape == (30, 40) and samples[1]['fov'] is None
    assert samples[1]['img_path'] == '/x/6.png'


def test_explicit_pad_id_and_errors():
    batch = vessel_collate([_item(3, 1, (4, 4), pad=None), _item(5, 1, (4, 4), pad=None)], pad_token_id=0)
    assert batch['data']['input_ids'][0, 3:].tolist() == [0, 0]
    with pytest.raises(ValueError, match='pad_token_id'):
        vessel_collate([_item(3, 1, (4, 4), pad=1), _item(3, 1, (4, 4), pad=2)])
    with pytest.raises(ValueError, match='empty'):
        vessel_collate([])
    bad = _item(3, 1, (4, 4))
    del bad['masks']
    with pytest.raises(KeyError, match='masks'):
        vessel_collate([bad])


def test_registered_in_functions():
    from mmengine.registry import FUNCTIONS as ROOT_FUNCTIONS

    from projects.sa2va_vessel.registry import FUNCTIONS

    assert FUNCTIONS.get('vessel_collate') is vessel_collate
    assert ROOT_FUNCTIONS.get('sa2va_vessel.vessel_collate') is vessel_collate  # as a config names it


def test_pad_to_multiple_of_buckets_lengths():
    a, b = _item(10, 1, (30, 40)), _item(6, 1, (50, 20))
    data = vessel_collate([a, b], pad_to_multiple_of=8)['data']
    assert data['input_ids'].shape == (2, 16)  # 10 rounded up to a multiple of 8
    assert data['attention_mask'].sum(1).tolist() == [10, 6]  # padding is masked, labels ignored
    assert (data['labels'][:, 10:] == IGNORE_INDEX).all()
    assert vessel_collate([a, b], pad_to_multiple_of=5)['data']['input_ids'].shape == (2, 10)

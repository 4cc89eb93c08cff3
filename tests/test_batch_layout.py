"""The batch's token layout is found on the host by the collate, and the forward uses it: the same
losses and gradients as finding [SEG] and the label rows on the device, without reading a count
back from the GPU (datasets/batch_layout.py)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch

from projects.sa2va_vessel.datasets import batch_layout as layout_module
from projects.sa2va_vessel.datasets.batch_layout import batch_layout, layouts_equal
from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.models import vessel_model as vessel_model_module
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel
from tests._step_support import loss_and_grads


@pytest.fixture(scope='module')
def items(tiny_checkpoint: Path, synthetic_vessels: Path) -> list[dict]:
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    return [dataset[i] for i in range(3)]


@pytest.fixture(scope='module')
def model(tiny_checkpoint: Path) -> Sa2VAVesselModel:
    torch.manual_seed(0)
    return Sa2VAVesselModel(str(tiny_checkpoint), dtype='float32', gradient_checkpointing=False)


def test_the_collate_finds_the_layout_the_model_would_find(items, model) -> None:
    batch = vessel_collate(items)['data']
    given = batch['layout']
    own = batch_layout(
        batch['input_ids'], batch['labels'], model.seg_token_id, model.img_context_id, batch['attention_mask']
    )
    assert layouts_equal(given, own)
    assert given.seg_per_sample == (1, 1, 1) and given.label_index.numel() > 0 and given.n_image_slots > 0
    # the gathered rows are the [SEG] tokens and the label positions, in row-major order
    flat_ids = batch['input_ids'].reshape(-1)
    assert (flat_ids[given.seg_index] == model.seg_token_id).all()
    assert torch.equal(batch['labels'].reshape(-1)[given.label_index + 1], given.label_target)


def test_the_forward_with_the_layout_equals_the_forward_without(items, model) -> None:
    data = vessel_collate(items)['data']
    without = {k: v for k, v in data.items() if k != 'layout'}
    losses_a, grads_a = loss_and_grads(model, data)
    losses_b, grads_b = loss_and_grads(model, without)
    assert losses_a.keys() == losses_b.keys()
    for key in losses_a:
        assert torch.equal(losses_a[key], losses_b[key]), key
    assert len(grads_a) == len(grads_b) > 0
    assert all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))


def test_a_batch_with_a_layout_is_not_searched_again(items, model) -> None:
    # on a GPU, finding the layout in the forward reads counts back from the device; with the
    # collate's layout the forward must not find it again (after the first batch's check)
    data = vessel_collate(items)['data']
    model(data, None, mode='loss')  # the first batch: checked once against the model's ids

    def refuse(*args, **kwargs):
        raise AssertionError('the forward searched the batch for its layout')

    with (
        mock.patch.object(vessel_model_module, 'batch_layout', refuse),
        mock.patch.object(vessel_model_module, 'label_rows', refuse),
        mock.patch.object(layout_module, 'label_rows', refuse),
    ):
        losses = model(data, None, mode='loss')
    assert torch.isfinite(sum(losses.values()))


def test_a_layout_of_another_tokenizer_is_refused_at_the_first_batch(items, tiny_checkpoint: Path) -> None:
    model = Sa2VAVesselModel(str(tiny_checkpoint), dtype='float32', gradient_checkpointing=False)
    other = [dict(item, seg_token_id=item['seg_token_id'] + 1) for item in items]
    data = vessel_collate(other)['data']
    with pytest.raises(ValueError, match=r"data\['layout'\].*not the model's.*model.model_path"):
        model(data, None, mode='loss')


def test_items_of_different_tokenizers_do_not_collate(items) -> None:
    mixed = [items[0], dict(items[1], seg_token_id=items[1]['seg_token_id'] + 1)]
    with pytest.raises(ValueError, match='different tokenizers'):
        vessel_collate(mixed)


def test_items_without_token_ids_collate_without_a_layout(items, model) -> None:
    bare = [{k: v for k, v in item.items() if k not in ('seg_token_id', 'image_token_id')} for item in items]
    data = vessel_collate(bare)['data']
    assert 'layout' not in data
    losses, _ = loss_and_grads(model, data)  # the model finds the layout itself
    assert torch.isfinite(sum(losses.values()))


def test_the_layout_reaches_the_model_through_the_data_preprocessor(items, model) -> None:
    from projects.sa2va_vessel.datasets.batch_layout import BatchLayout

    moved = model.data_preprocessor(vessel_collate(items), True)['data']['layout']
    assert isinstance(moved, BatchLayout)  # a namedtuple: mmengine's cast_data keeps its type
    assert isinstance(moved.seg_per_sample, tuple) and isinstance(moved.n_image_slots, int)
    assert layouts_equal(moved, vessel_collate(items)['data']['layout'])

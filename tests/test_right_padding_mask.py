"""The ``causal_mask_for_right_padding`` speed switch (models/speed.py): a right-padded batch goes to
the InternVL LLM without its padding mask. Causal attention already hides the pads after each
real token, so the losses and gradients are those of the masked forward; a batch padded anywhere
else keeps its mask."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch

from projects.sa2va_vessel.datasets.batch_layout import is_right_padded
from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel
from tests._step_support import loss_and_grads


def test_is_right_padded() -> None:
    assert is_right_padded(torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0]]))
    assert is_right_padded(torch.ones(2, 4, dtype=torch.bool))
    assert not is_right_padded(torch.tensor([[1, 1, 1], [0, 1, 1]]))  # left padding
    assert not is_right_padded(torch.tensor([[1, 0, 1]]))  # a hole


@pytest.fixture(scope='module')
def batch(tiny_checkpoint: Path, synthetic_vessels: Path) -> dict:
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    data = vessel_collate([dataset[i] for i in range(3)], pad_to_multiple_of=64)['data']
    assert not bool(data['attention_mask'].all()), 'the batch must hold padding for this test to mean anything'
    assert data['layout'].right_padded
    return data


@pytest.fixture(scope='module')
def model(tiny_checkpoint: Path) -> Sa2VAVesselModel:
    torch.manual_seed(0)
    return Sa2VAVesselModel(str(tiny_checkpoint), dtype='float32', gradient_checkpointing=False)


def _run(model: Sa2VAVesselModel, data: dict, switch: bool) -> tuple[dict, list, list]:
    """Losses, gradients and the attention masks the LLM was given, with the switch as asked."""
    model.set_speed_switches(model.speed.replace(causal_mask_for_right_padding=switch))
    seen = []
    original = model.sa2va.llm_last_hidden

    def spy(inputs_embeds, attention_mask, *args, **kwargs):
        seen.append(attention_mask)
        return original(inputs_embeds, attention_mask, *args, **kwargs)

    with mock.patch.object(model.sa2va, 'llm_last_hidden', spy):
        losses, grads = loss_and_grads(model, data)
    return losses, grads, seen


def test_a_right_padded_batch_trains_the_same_without_its_mask(model, batch) -> None:
    masked, masked_grads, masks_off = _run(model, batch, switch=False)
    causal, causal_grads, masks_on = _run(model, batch, switch=True)
    assert masks_off and all(m is batch['attention_mask'] for m in masks_off)
    assert masks_on and all(m is None for m in masks_on), 'the switch must drop the padding mask'
    assert masked.keys() == causal.keys()
    for key in masked:
        torch.testing.assert_close(causal[key], masked[key], rtol=1e-5, atol=1e-6, msg=key)
    assert len(masked_grads) == len(causal_grads) > 0
    for a, b in zip(causal_grads, masked_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_a_batch_not_right_padded_keeps_its_mask(model, batch) -> None:
    other = dict(batch, layout=batch['layout']._replace(right_padded=False))
    _, _, masks = _run(model, other, switch=True)
    assert masks and all(m is batch['attention_mask'] for m in masks)


def test_the_mask_matters_where_padding_is_not_at_the_end(model) -> None:
    # why the switch asks for right padding: with pads in front, the masked and the unmasked forward
    # differ (so the equality above is not the mask being ignored anyway)
    width = model.sa2va.language_model.config.hidden_size
    embeds = torch.randn(2, 40, width, generator=torch.Generator().manual_seed(0))
    left_padded = torch.ones(2, 40, dtype=torch.bool)
    left_padded[0, :10] = False
    positions = torch.arange(40).expand(2, 40)
    with torch.no_grad():
        masked = model.sa2va.llm_last_hidden(embeds, left_padded, positions)
        unmasked = model.sa2va.llm_last_hidden(embeds, None, positions)
    assert not torch.allclose(masked[0, 10:], unmasked[0, 10:], atol=1e-4)
    torch.testing.assert_close(masked[1], unmasked[1])  # the unpadded row: the same either way

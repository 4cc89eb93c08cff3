"""A batch tokenised by another checkpoint's tokenizer is refused at the first step with the keys to
fix; on a GPU the embedding lookup would abort the process with no Python traceback (device call
23: a `preset:tiny` model fed by a data set with the real 151k-token tokenizer). Also: the batch
reaches the device by non-blocking copies."""

from __future__ import annotations

import pytest
import torch

from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel


@pytest.fixture(scope='module')
def model() -> Sa2VAVesselModel:
    return Sa2VAVesselModel('preset:tiny', dtype='float32', gradient_checkpointing=False)


def test_ids_beyond_the_embedding_are_refused_naming_the_keys(model) -> None:
    rows = model.sa2va.language_model.get_input_embeddings().weight.shape[0]
    ids = torch.tensor([[1, model.seg_token_id, rows + 151_000]])
    for _ in range(2):  # a refused batch does not count as checked: the next one is checked again
        with pytest.raises(ValueError, match=rf'token id {rows + 151000}.*{rows} embedding rows.*train_dataloader'):
            model(dict(input_ids=ids), None, mode='loss')


def test_a_training_batch_without_the_models_seg_id_is_refused(model) -> None:
    with pytest.raises(ValueError, match=rf'\[SEG\] id {model.seg_token_id}'):
        model.check_batch_ids(torch.tensor([[1, 2, 3]]), expect_seg=True)
    model.check_batch_ids(torch.tensor([[1, 2, 3]]), expect_seg=False)  # generation writes [SEG] itself
    model.check_batch_ids(torch.tensor([[1, model.seg_token_id]]), expect_seg=True)


def test_the_batch_moves_to_the_device_without_a_blocking_copy(model) -> None:
    """mmengine's default preprocessor copies blocking: every tensor of every batch would drain
    the GPU's queue. The model's default asks for non-blocking copies (the loader pins memory)."""
    from unittest import mock

    seen = []
    real_to = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        seen.append(kwargs.get('non_blocking', False))
        return real_to(self, *args, **kwargs)

    with mock.patch.object(torch.Tensor, 'to', recording_to):
        model.data_preprocessor({'input_ids': torch.ones(1, 3, dtype=torch.long), 'masks': [torch.zeros(4, 4)]}, True)
    assert seen == [True, True]

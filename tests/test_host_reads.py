"""What the teacher-forced training step reads back from the device, counted on the CPU.

On a GPU every such read (``.item()``, ``bool(t)``, a ``nonzero`` or ``masked_select`` whose output
size depends on the data) makes the host wait for the queued work, and the GPU then idles while the
host catches up (``tools/benchmark.py --end-to-end --sync-audit`` lists them on the device). These
are the ops that read, seen at the dispatcher, so the same count is kept on the CPU: the step with
the collate's layout has one known read, the image splice's ``masked_scatter`` backward, and none
with ``indexed_image_splice``. A new read anywhere in the forward or backward fails here.

Blind spots: ``Tensor.tolist()`` does not pass the dispatcher, and a copy to the host (``.cpu()``)
cannot be told from a CPU-to-CPU copy here; the device's sync audit sees both."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from projects.sa2va_vessel.datasets.collate import vessel_collate
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel
from tests._step_support import loss_and_grads

# ops whose result the host needs before it can go on, or whose output shape depends on the data
READING_OPS = {
    'aten._local_scalar_dense.default',  # .item(), bool(t), int(t)
    'aten.is_nonzero.default',
    'aten.equal.default',
    'aten.nonzero.default',
    'aten.masked_select.default',
    'aten.masked_scatter_backward.default',
    'aten.unique_dim.default',
    'aten._unique2.default',
    'aten.repeat_interleave.Tensor',
}


class HostReads(TorchDispatchMode):
    """Counts the reading ops (and indexing by a bool mask, a hidden ``nonzero``) by name."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func)
        kwargs = kwargs or {}
        if name == 'aten.repeat_interleave.Tensor' and kwargs.get('output_size') is not None:
            pass  # its size is given: nothing to read
        elif name in READING_OPS:
            self.counts[name] += 1
        elif name.startswith(('aten.index.Tensor', 'aten.index_put')) and _has_bool_index(args):
            self.counts[f'{name} (bool mask)'] += 1
        return func(*args, **kwargs)


def _has_bool_index(args: tuple) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(t, torch.Tensor) and t.dtype == torch.bool for t in indices)


@pytest.fixture(scope='module')
def batch(tiny_checkpoint: Path, synthetic_vessels: Path) -> dict:
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    return vessel_collate([dataset[i] for i in range(3)], pad_to_multiple_of=64)['data']


@pytest.fixture(scope='module')
def model(tiny_checkpoint: Path, batch: dict) -> Sa2VAVesselModel:
    torch.manual_seed(0)
    model = Sa2VAVesselModel(str(tiny_checkpoint), dtype='float32', gradient_checkpointing=False)
    model(batch, None, mode='loss')  # the first batch's one-time checks read, by design
    return model


def _step(model: Sa2VAVesselModel, data: dict, **switches: bool) -> tuple[collections.Counter, dict, list]:
    """One forward + backward with ``switches``: the reads, the losses and the gradients."""
    model.set_speed_switches(model.speed.replace(**switches))
    reads = HostReads()
    with reads:
        losses, grads = loss_and_grads(model, data)
    return reads.counts, losses, grads


def test_the_step_reads_once_and_not_at_all_with_the_indexed_splice(model, batch) -> None:
    reads, _, _ = _step(model, batch, causal_mask_for_right_padding=True, indexed_image_splice=False)
    assert dict(reads) == {'aten.masked_scatter_backward.default': 1}
    reads, _, _ = _step(model, batch, causal_mask_for_right_padding=True, indexed_image_splice=True)
    assert dict(reads) == {}


def test_the_padding_mask_read_comes_back_without_its_switch(model, batch) -> None:
    # transformers decides whether SDPA may skip the padding mask by reading it (padding_mask.all())
    reads, _, _ = _step(model, batch, causal_mask_for_right_padding=False, indexed_image_splice=True)
    assert sum(reads.values()) >= 1


def test_a_batch_without_the_collate_layout_reads_it_from_the_device(model, batch) -> None:
    # the counter is not blind: finding the layout on the device reads counts back
    without = {k: v for k, v in batch.items() if k != 'layout'}
    reads, _, _ = _step(model, without, causal_mask_for_right_padding=True, indexed_image_splice=True)
    assert reads['aten.nonzero.default'] >= 1


def test_the_indexed_splice_trains_exactly_as_the_masked_one(model, batch) -> None:
    _, masked, masked_grads = _step(model, batch, causal_mask_for_right_padding=True, indexed_image_splice=False)
    _, indexed, indexed_grads = _step(model, batch, causal_mask_for_right_padding=True, indexed_image_splice=True)
    assert masked.keys() == indexed.keys()
    for key in masked:
        assert torch.equal(masked[key], indexed[key]), key
    assert len(masked_grads) == len(indexed_grads) > 0
    assert all(torch.equal(a, b) for a, b in zip(masked_grads, indexed_grads))

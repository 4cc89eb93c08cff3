"""The training samplers carry the epoch in the index: every epoch draws new augmentation in
persistent loader workers too, and the stream sampler keeps one loader iterator for the whole run
(no restart, no drained prefetch at epoch boundaries) with the order of restarted epochs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mmengine.dataset import DefaultSampler
from torch.utils.data import DataLoader

from projects.sa2va_vessel.datasets.epoch_samplers import EpochIndexSampler, EpochStreamSampler, split_epoch_index
from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
from projects.sa2va_vessel.datasets.transforms import VesselAugment
from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
from tests._data_support import tiny_checkpoint_dir


@pytest.fixture(scope='module')
def augmented(tmp_path_factory) -> VesselSegDataset:
    root = tmp_path_factory.mktemp('epoch_vessels')
    write_synthetic_dataset(root, n=4, seed=0, size=96, val_fraction=0.0)
    return VesselSegDataset(str(root), 'train', str(tiny_checkpoint_dir()), transform=VesselAugment())


def _as_list(batch: list) -> list:
    return batch


def test_split_epoch_index() -> None:
    assert split_epoch_index(0, 4) == (0, 0) and split_epoch_index(3, 4) == (0, 3)
    assert split_epoch_index(9, 4) == (2, 1)
    with pytest.raises(IndexError, match='negative'):
        split_epoch_index(-1, 4)


def test_stream_is_the_restarted_epochs_one_after_another(augmented) -> None:
    n = len(augmented)
    stream = EpochStreamSampler(augmented, shuffle=True, seed=3)
    assert len(stream) == n  # one epoch: the loop's resume arithmetic divides by it
    got = list(itertools.islice(iter(stream), 5 * n))
    reference = DefaultSampler(augmented, shuffle=True, seed=3)
    expected = []
    for epoch in range(5):
        reference.set_epoch(epoch)
        expected += [epoch * n + i for i in reference]
    assert got == expected
    assert len({tuple(got[e * n : (e + 1) * n]) for e in range(5)}) > 1  # reshuffled per epoch
    assert stream.epoch == 0  # reading the stream leaves the sampler's epoch alone
    # started at a later epoch (as resume sets it), the stream goes on from there
    stream.set_epoch(2)
    assert list(itertools.islice(iter(stream), 2 * n)) == expected[2 * n : 4 * n]
    one = EpochIndexSampler(augmented, shuffle=True, seed=3)
    one.set_epoch(1)
    assert list(one) == expected[n : 2 * n]  # the finite sampler: exactly one epoch


def test_one_loader_iterator_serves_every_epoch_with_fresh_augmentation(augmented) -> None:
    n = len(augmented)
    loader = DataLoader(
        augmented,
        batch_size=2,
        sampler=EpochStreamSampler(augmented, shuffle=False, seed=0),
        num_workers=2,
        persistent_workers=True,
        collate_fn=_as_list,  # a module-level function: the runner tests leave forkserver workers
    )
    it = iter(loader)
    items = [s for _ in range(3 * n // 2) for s in next(it)]  # three epochs from ONE iterator
    by_epoch = [items[e * n : (e + 1) * n] for e in range(3)]
    for e, epoch_items in enumerate(by_epoch):
        for i, item in enumerate(epoch_items):
            # the worker's sample is the main process's sample of the same epoch-coded index
            assert np.array_equal(item['g_pixel_values'].numpy(), augmented[e * n + i]['g_pixel_values'].numpy())
    for i in range(n):
        images = [by_epoch[e][i]['g_pixel_values'].numpy() for e in range(3)]
        assert not np.array_equal(images[0], images[1]) or not np.array_equal(images[1], images[2]), (
            f'image {i}: the same augmentation in every epoch'
        )
    assert [s['img_path'] for s in by_epoch[0]] == [s['img_path'] for s in by_epoch[2]]  # same images
    assert len(list(augmented)) == n  # plain iteration stops after one epoch

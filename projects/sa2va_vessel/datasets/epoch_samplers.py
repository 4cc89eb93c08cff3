"""Training samplers whose indices carry the epoch: ``epoch * len(dataset) + item``.

Why the epoch travels inside the index: the loader workers hold their own copies of the data set,
so an epoch set on the main process's copy (``dataset.set_epoch``) never reaches persistent
workers, and every epoch would draw the same augmentation and questions per sample. With the epoch
in the index each worker derives (epoch, item) from what it is asked for (:func:`split_epoch_index`).

* :class:`EpochIndexSampler`: one epoch of mmengine's ``DefaultSampler`` (same order, rank shards
  and per-epoch shuffle seed), epoch-coded.
* :class:`EpochStreamSampler` (the training configs' sampler): those epochs one after another,
  without end. The data loader is then never exhausted, so it never restarts at an epoch boundary:
  a restart drops the workers' prefetched batches, and mmengine's iterator also sleeps 2 s there.
  On the H200 that cost 0.46 s of data wait per iteration at micro-batch 32 on a data set of 256
  images (docs/PERFORMANCE.md, call 22). The stream is index for index what restarting the
  ``EpochIndexSampler`` at each epoch gives, so the samples and their order do not change.
"""

from __future__ import annotations

import copy
import itertools
from typing import Iterator, Tuple

from mmengine.dataset import DefaultSampler

from ..registry import DATA_SAMPLERS


def split_epoch_index(index: int, dataset_len: int) -> Tuple[int, int]:
    """(epoch, item) of a sampler index ``epoch * dataset_len + item``; a plain index is epoch 0."""
    if index < 0:
        raise IndexError(f'sample index {index} is negative')
    if dataset_len <= 0:
        raise IndexError(f'sample index {index} of an empty data set')
    epoch, item = divmod(int(index), int(dataset_len))
    return epoch, item


@DATA_SAMPLERS.register_module()
class EpochIndexSampler(DefaultSampler):
    """``DefaultSampler``'s order for the current epoch, each index ``epoch * len(dataset) + item``."""

    def epoch_indices(self, epoch: int) -> Iterator[int]:
        """This rank's indices of ``epoch``. Reading them leaves ``self.epoch`` as it is: the
        launch check peeks at the first indices before training starts."""
        view = copy.copy(self)  # DefaultSampler reads the epoch from the instance
        view.epoch = epoch
        offset = epoch * len(self.dataset)
        return (offset + item for item in DefaultSampler.__iter__(view))

    def __iter__(self) -> Iterator[int]:
        return self.epoch_indices(self.epoch)


@DATA_SAMPLERS.register_module()
class EpochStreamSampler(EpochIndexSampler):
    """:class:`EpochIndexSampler`'s epochs one after another, from the current epoch on, without
    end. ``len()`` is one epoch's count (what the loop's resume arithmetic needs)."""

    #: the loop resumes a stream by skipping into it; it never restarts it (engine/resumable_loop.py)
    endless = True

    def __iter__(self) -> Iterator[int]:
        start = self.epoch
        return itertools.chain.from_iterable(self.epoch_indices(epoch) for epoch in itertools.count(start))

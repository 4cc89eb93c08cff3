"""A bounded cache of frozen-encoder outputs.

The SAM2 image encoder is frozen, so its features for an image that reaches it unchanged (no
random augmentation on the SAM2 input) are the same every epoch. The dataset marks such samples
with a ``frozen_feature_key``; samples without one are always recomputed.
"""

from __future__ import annotations

from collections import OrderedDict

import torch


class FrozenFeatureCache:
    """Least-recently-used store of per-sample feature lists, at most ``capacity`` samples."""

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._store: OrderedDict[str, list[torch.Tensor]] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    def __contains__(self, key: str) -> bool:
        return key in self._store

    def __len__(self) -> int:
        return len(self._store)

    def get(self, key: str) -> list[torch.Tensor]:
        self._store.move_to_end(key)
        return self._store[key]

    def put(self, key: str, features: list[torch.Tensor]) -> None:
        self._store[key] = [f.detach() for f in features]
        self._store.move_to_end(key)
        while len(self._store) > self.capacity:
            self._store.popitem(last=False)

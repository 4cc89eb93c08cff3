"""Vessel data: readers, synthetic generator, Sa2VA image/text inputs, dataset and collate.

`VesselSegDataset`, `VesselVideoDataset` (DATASETS), `VesselAugment` (TRANSFORMS), the collate
functions (FUNCTIONS) and the epoch-coded samplers (DATA_SAMPLERS) register in the project's registries (`projects/sa2va_vessel/registry.py`),
which import them when a config names them; the names below are imported on first use, so the
light modules (readers, splits, protocols) do not import torch.
"""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        'VesselSegDataset': 'vessel_dataset',
        'VesselVideoDataset': 'video_dataset',
        'vessel_collate': 'collate',
        'video_collate': 'video_dataset',
        'EpochIndexSampler': 'epoch_samplers',
        'EpochStreamSampler': 'epoch_samplers',
        'split_epoch_index': 'epoch_samplers',
    },
)

"""Vessel data: readers, synthetic generator, Sa2VA image/text inputs, dataset and collate.

Importing this package registers `VesselSegDataset`, `VesselVideoDataset` (DATASETS),
`vessel_collate`, `video_collate` (FUNCTIONS) and `ClipSampler` (DATA_SAMPLERS) with mmengine's
registries.
"""
from .collate import vessel_collate
from .vessel_dataset import VesselSegDataset
from .video_dataset import ClipSampler, VesselVideoDataset, video_collate

__all__ = ["ClipSampler", "VesselSegDataset", "VesselVideoDataset", "vessel_collate", "video_collate"]

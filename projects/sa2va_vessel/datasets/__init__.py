"""Vessel data: readers, synthetic generator, Sa2VA image/text inputs, dataset and collate.

Importing this package registers `VesselSegDataset` (DATASETS) and `vessel_collate`
(FUNCTIONS) with mmengine's registries.
"""
from .collate import vessel_collate
from .vessel_dataset import VesselSegDataset
from .video_dataset import VesselVideoDataset, video_collate

__all__ = ["VesselSegDataset", "VesselVideoDataset", "vessel_collate", "video_collate"]

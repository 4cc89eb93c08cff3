"""Vessel data: readers, synthetic generator, Sa2VA image/text inputs, dataset and collate.

Importing this package registers `VesselSegDataset` (DATASETS) and `vessel_collate`
(FUNCTIONS) with mmengine's registries.
"""
from .collate import vessel_collate
from .vessel_dataset import VesselSegDataset

__all__ = ["VesselSegDataset", "vessel_collate"]

"""Sa2VA for vessels: official-layout checkpoints, transformers-native modules, the training model.

Importing this package registers ``Sa2VAVesselModel`` in mmengine's MODELS registry.
"""
from .vessel_model import Sa2VAVesselModel
from .video_model import Sa2VAVideoVesselModel

__all__ = ['Sa2VAVesselModel', 'Sa2VAVideoVesselModel']

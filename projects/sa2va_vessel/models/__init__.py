"""Sa2VA for vessels: official-layout checkpoints, transformers-native modules, the training model.

The model classes register in the project's ``MODELS`` (``projects/sa2va_vessel/registry.py``),
which imports them when a config names them; the names below are imported on first use.
"""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__, {'Sa2VAVesselModel': 'vessel_model', 'Sa2VAVideoVesselModel': 'video_model'}
)

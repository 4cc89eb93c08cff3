"""Evaluation: numpy vessel metrics and the mmengine ``VesselSegMetric``.

The metrics register in the project's ``METRICS`` (``projects/sa2va_vessel/registry.py``); the
names below are imported on first use.
"""

from ..lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    __name__, {'VesselGenSegMetric': 'vessel_metric', 'VesselSegMetric': 'vessel_metric'}
)

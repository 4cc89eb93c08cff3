"""Evaluation: numpy vessel metrics and the mmengine ``VesselSegMetric``."""
from . import metrics
from .vessel_metric import VesselGenSegMetric, VesselSegMetric

__all__ = ['metrics', 'VesselGenSegMetric', 'VesselSegMetric']

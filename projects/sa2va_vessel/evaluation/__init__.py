"""Evaluation: numpy vessel metrics and the mmengine ``VesselSegMetric``."""
from . import metrics
from .vessel_metric import VesselSegMetric

__all__ = ['metrics', 'VesselSegMetric']

"""Small helpers shared by the runner glue and the hooks."""

from __future__ import annotations

from typing import Any, Optional

from mmengine.hooks import LoggerHook
from mmengine.model import is_model_wrapper
from torch import nn


def deepspeed_engine_of(model: Any) -> Optional[Any]:
    """The ``DeepSpeedEngine`` behind ``runner.model``, or None for the plain runner."""
    # Compared by name so the plain runner never needs to import deepspeed.
    name = type(model).__name__
    if name == 'MMDeepSpeedEngineWrapper':
        return model.model
    if name == 'DeepSpeedEngine':
        return model
    return None


def unwrap_model(model: Any) -> nn.Module:
    """Return the user's model inside DDP / DeepSpeed / mmengine wrappers.

    The chain differs per runner: ``MMDistributedDataParallel.module`` for the plain runner,
    ``MMDeepSpeedEngineWrapper.model`` (a ``DeepSpeedEngine``) ``.module`` for DeepSpeed.
    """
    engine = deepspeed_engine_of(model)
    if engine is not None:
        return engine.module
    while is_model_wrapper(model):
        model = model.module
    return model


def logger_interval(runner: Any, default: int = 10) -> int:
    """The LoggerHook's interval (``default`` without one): the hooks that feed the log line use it."""
    loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
    return loggers[0].interval if loggers else default

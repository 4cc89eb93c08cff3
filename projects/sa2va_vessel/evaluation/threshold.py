"""The operating threshold of an evaluation or a prediction, resolved in one place.

In order: the one given (``--threshold``: source ``'command line'``); the val-chosen one of
``best_checkpoint.json`` beside the checkpoint when that record describes this checkpoint
(``'best_checkpoint.json'``); the one an export recorded in its ``config.json``, itself copied from
that record at export time (``'export config.json'``); else the caller's default. Never one chosen
on the data being scored: every recorded threshold comes from validation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from ..models.training_checkpoint import read_best_record, read_export_settings


@dataclass(frozen=True)
class ResolvedThreshold:
    """``value`` (``None`` when the default is the caller's own, e.g. the config's metric), where it
    came from, and the best-checkpoint record beside the checkpoint (or None)."""

    value: Optional[float]
    source: str
    record: Optional[dict[str, Any]]


def resolve_threshold(
    checkpoint: str | os.PathLike,
    given: Optional[float] = None,
    default: Optional[float] = 0.5,
    default_source: str = 'default',
) -> ResolvedThreshold:
    """The operating threshold for ``checkpoint`` (see module docstring)."""
    record = read_best_record(checkpoint)
    if given is not None:
        return ResolvedThreshold(float(given), 'command line', record)
    if record is not None and record.get('threshold') is not None:
        return ResolvedThreshold(float(record['threshold']), 'best_checkpoint.json', record)
    exported = read_export_settings(checkpoint).get('threshold')
    if exported is not None:
        return ResolvedThreshold(float(exported), 'export config.json', record)
    return ResolvedThreshold(default, default_source, record)

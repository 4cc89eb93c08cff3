"""Session fixtures: a tiny random checkpoint and a small synthetic vessel set, built once."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va
    return write_random_sa2va(tmp_path_factory.mktemp('tiny_sa2va'), preset='tiny', seed=0)

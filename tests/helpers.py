"""Shared test helpers: where ../shared is, and building small artefacts once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / 'shared'
GOLDEN = SHARED / 'fixtures' / 'golden'
LAYOUT_8B = SHARED / 'fixtures' / 'sa2va_internvl3_8b_layout'


def require(path: Path, what: str) -> Path:
    """Skip the test, saying why, when a fixture from ../shared is absent (a user's clone has none)."""
    if not path.exists():
        pytest.skip(f'{what} not found at {path}: it lives in ../shared beside the checkout, which this clone lacks')
    return path

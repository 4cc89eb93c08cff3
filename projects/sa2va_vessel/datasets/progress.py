"""Progress bars (with ETA) for the data tools' long loops: tqdm, on stderr, off when not a terminal."""

from __future__ import annotations

import os
from typing import Iterable, Optional, TypeVar

from tqdm.auto import tqdm

T = TypeVar('T')


def progress(iterable: Iterable[T], desc: str, total: Optional[int] = None, unit: str = 'it') -> Iterable[T]:
    """`iterable` wrapped in a tqdm bar; hidden off a terminal unless SA2VA_PROGRESS=1 (logs stay clean)."""
    force = os.environ.get('SA2VA_PROGRESS')
    disable = None if force is None else force == '0'
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=disable, dynamic_ncols=True)

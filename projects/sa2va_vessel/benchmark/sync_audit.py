"""`SyncAudit`: where one training iteration makes the host wait for the GPU.

A synchronisation (``.item()``, ``.cpu()``, a boolean-mask gather, ``torch.cuda.synchronize``)
drains the GPU's queue; the GPU then idles while the host queues the next work. Under
``torch.cuda.set_sync_debug_mode('warn')`` every synchronising CUDA call raises a warning; the
audit records each with the call site (the innermost frame outside torch, and the first frame of
this project or of DeepSpeed / mmengine above it), so a benchmark run lists what is left to remove.
Only CUDA calls are seen: on a CPU the audit reads zero.
"""

from __future__ import annotations

import traceback
import warnings
from collections import Counter
from typing import Any, Optional

import torch

_MESSAGE = 'synchroniz'  # torch: "called a synchronizing CUDA operation"
_LIBRARIES = ('/deepspeed/', '/mmengine/', '/sa2va_vessel/', '/tools/')


def call_site(stack: list[traceback.FrameSummary]) -> str:
    """``file:line (function)`` of the innermost frame outside torch, with the first project or
    library frame above it where that is another frame."""
    frames = [f for f in stack if '/torch/' not in f.filename and '/warnings.py' not in f.filename]
    if not frames:
        return 'unknown'
    inner = frames[-1]
    where = f'{_short(inner.filename)}:{inner.lineno} ({inner.name})'
    owner = next((f for f in reversed(frames) if any(k in f.filename for k in _LIBRARIES)), None)
    if owner is not None and owner is not inner:
        where += f' <- {_short(owner.filename)}:{owner.lineno} ({owner.name})'
    return where


def _short(path: str) -> str:
    for key in _LIBRARIES + ('/site-packages/',):
        if key in path:
            return key.strip('/') + '/' + path.split(key, 1)[1]
    return path


class SyncAudit:
    """Counts the synchronising CUDA calls between :meth:`start` and :meth:`stop`, per call site."""

    def __init__(self) -> None:
        self.sites: Counter[str] = Counter()
        self._catch: Optional[Any] = None

    @property
    def running(self) -> bool:
        return self._catch is not None

    def start(self) -> None:
        if torch.cuda.is_available():  # before the recorder: its own call is not the step's
            torch.cuda.set_sync_debug_mode('warn')
        self._catch = warnings.catch_warnings()  # restores filters and showwarning at stop()
        self._catch.__enter__()
        warnings.simplefilter('always')  # every occurrence, not once per call site
        shown = warnings.showwarning

        def record(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if _MESSAGE in str(message):
                self.sites[call_site(traceback.extract_stack()[:-1])] += 1
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = record

    def stop(self) -> None:
        if self._catch is None:
            return
        if torch.cuda.is_available():
            torch.cuda.set_sync_debug_mode('default')
        self._catch.__exit__(None, None, None)
        self._catch = None

    def summary(self) -> dict:
        return {
            'count': sum(self.sites.values()),
            'sites': [{'where': where, 'count': n} for where, n in self.sites.most_common()],
        }

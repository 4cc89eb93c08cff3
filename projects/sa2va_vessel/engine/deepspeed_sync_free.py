"""DeepSpeed 0.19's gradient-norm step without its two host reads of a device scalar.

ZeRO-1/2 computes the global gradient norm for clipping every step, then replaces a NaN/inf norm
by -1 with ``deepspeed.runtime.utils.mask_nan_or_inf_with_val_inplace``. That function builds the
-1 with ``torch.tensor(-1.0, device=...)`` (a host-to-device copy of pageable memory) and passes
it to ``masked_fill_`` as a 0-dim tensor, which reads it back (``.item()``): two device
synchronisations per step (``tools/benchmark.py --end-to-end --sync-audit``, docs/bench/call33).
``install()`` points DeepSpeed's two users of the function at :func:`mask_nan_or_inf_inplace`,
which writes the same -1 (DeepSpeed ignores its own ``val`` argument too) with a Python scalar.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import torch

logger = logging.getLogger(__name__)

_NAME = 'mask_nan_or_inf_with_val_inplace'
_MODULES = ('deepspeed.runtime.utils', 'deepspeed.runtime.zero.stage_1_and_2')


def mask_nan_or_inf_inplace(input: torch.Tensor, device: Optional[Any] = None, val: float = -1.0) -> None:
    """DeepSpeed's ``mask_nan_or_inf_with_val_inplace``, the same result, no synchronisation."""
    input.masked_fill_(~torch.isfinite(input), -1.0)


def install() -> list[str]:
    """Replace the function in the DeepSpeed modules that call it; returns the modules patched."""
    import importlib

    patched = []
    for name in _MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, _NAME):  # another DeepSpeed version: leave it as it is
            logger.warning('DeepSpeed %s has no %s: its gradient-norm step keeps its own', name, _NAME)
            continue
        setattr(module, _NAME, mask_nan_or_inf_inplace)
        patched.append(name)
    return patched

"""DeepSpeed 0.19's gradient-norm step, without host reads of a device scalar and in few kernels.

ZeRO-1/2 computes the global gradient norm for clipping every step, in
``DeepSpeedZeroOptimizer.get_grad_norm_direct``:

* it casts each gradient to fp64 and takes its norm, one tensor at a time: two kernel launches
  and their Python per trainable tensor, ~1,000 launches per step at 2B (518 tensors;
  ``tools/benchmark.py --end-to-end --profile throughput``, docs/bench/call36), where the step
  is bound by the host;
* it then replaces a NaN/inf norm by -1 with ``deepspeed.runtime.utils.mask_nan_or_inf_with_val_inplace``,
  which builds the -1 with ``torch.tensor(-1.0, device=...)`` (a host-to-device copy of pageable
  memory) and passes it to ``masked_fill_`` as a 0-dim tensor, which reads it back (``.item()``):
  two device synchronisations per step (``--sync-audit``, docs/bench/call33).

``install()`` replaces both: :func:`fused_grad_norm_direct` takes the same per-tensor fp64 norms
with one ``torch._foreach_norm`` per gradient dtype (``utils.per_tensor_norms``; the same filters for pipeline-replicated and
model-parallel parameters, the same reductions across ranks), and :func:`mask_nan_or_inf_inplace`
writes the same -1 (DeepSpeed ignores its own ``val`` argument too) with a Python scalar.
"""

from __future__ import annotations

import logging
from typing import Any, Optional, Sequence

import torch

from .utils import per_tensor_norms

logger = logging.getLogger(__name__)

_NAME = 'mask_nan_or_inf_with_val_inplace'
_MODULES = ('deepspeed.runtime.utils', 'deepspeed.runtime.zero.stage_1_and_2')


def mask_nan_or_inf_inplace(input: torch.Tensor, device: Optional[Any] = None, val: float = -1.0) -> None:
    """DeepSpeed's ``mask_nan_or_inf_with_val_inplace``, the same result, no synchronisation."""
    input.masked_fill_(~torch.isfinite(input), -1.0)


def fused_grad_norm_direct(self: Any, gradients: Sequence[torch.Tensor], params: Sequence[Any], norm_type: float = 2):
    """``DeepSpeedZeroOptimizer.get_grad_norm_direct`` for the L2 norm, with the per-tensor norms fused.

    Bound as a method of the optimizer; the inf norm keeps DeepSpeed's own code.
    """
    from deepspeed import comm as dist
    from deepspeed.runtime.constants import PIPE_REPLICATED
    from deepspeed.runtime.utils import is_model_parallel_parameter
    from deepspeed.runtime.zero.utils import get_norm_dtype

    if float(norm_type) != 2.0:
        return _DEEPSPEED_GRAD_NORM_DIRECT(self, gradients, params, norm_type)
    kept = [
        g.detach()
        for g, p in zip(gradients, params)
        if not (hasattr(p, PIPE_REPLICATED) and p.ds_pipe_replicated)  # counted once
        and (is_model_parallel_parameter(p) or self.model_parallel_rank == 0)
    ]
    if kept:
        total_norm = per_tensor_norms(kept, get_norm_dtype()).square().sum().float()
    else:
        total_norm = torch.zeros((), dtype=torch.float32, device=self.device)
    dist.all_reduce(total_norm, op=dist.ReduceOp.SUM, group=self.dp_process_group)
    self._model_parallel_all_reduce(tensor=total_norm, op=dist.ReduceOp.SUM)
    total_norm = total_norm.pow(0.5)
    mask_nan_or_inf_inplace(total_norm)
    return total_norm


_DEEPSPEED_GRAD_NORM_DIRECT: Any = None


def install() -> list[str]:
    """Point DeepSpeed at the functions above; returns what was patched."""
    import importlib

    global _DEEPSPEED_GRAD_NORM_DIRECT
    patched = []
    for name in _MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, _NAME):  # another DeepSpeed version: leave it as it is
            logger.warning('DeepSpeed %s has no %s: its gradient-norm step keeps its own', name, _NAME)
            continue
        setattr(module, _NAME, mask_nan_or_inf_inplace)
        patched.append(f'{name}.{_NAME}')
    from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer

    current = DeepSpeedZeroOptimizer.get_grad_norm_direct
    if current is not fused_grad_norm_direct:
        _DEEPSPEED_GRAD_NORM_DIRECT = current
        DeepSpeedZeroOptimizer.get_grad_norm_direct = fused_grad_norm_direct
    patched.append('DeepSpeedZeroOptimizer.get_grad_norm_direct')
    return patched

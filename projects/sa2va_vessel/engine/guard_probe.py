"""What the gradient-flow guard measures, cheaply, in the plain runner and under DeepSpeed ZeRO-2.

The guard checks *units*: a trainable group (``model.trainable_groups()``), except that the
``lora`` group is split by module kind (``lora.q_proj`` ... ``lora.down_proj``, read from the
parameter names), because the attention adapters alone keep the group's gradient above zero
when the MLP adapters are bypassed.

Per step it needs each unit's gradient norm, and every ``window`` steps whether the unit's
weights moved:

* gradients: plain runner ``param.grad`` (already all-reduced by DDP). ZeRO-1/2 frees
  ``param.grad`` and keeps on each rank the reduced gradient of its *fragment* of every
  parameter; the probe reads those local fragments (what ``deepspeed.utils.safe_get_full_grad``
  reads before its per-parameter all-reduce) and all-reduces one small vector of squared norms,
  so a step costs one collective instead of one per parameter;
* weights: a fixed strided sample (at most :data:`SAMPLE` elements) of every parameter, compared
  exactly. Under DeepSpeed the sample comes from the fp32 master fragment, because a warm-up step
  of 1e-8 does not move bf16 weights (exact comparison of bf16 would read "unchanged"); in the
  plain runner with ``MasterWeightOptimWrapper`` it comes from that wrapper's fp32 masters.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

from ..models.peft_names import is_lora_b, lora_kind
from .utils import per_tensor_norms

Groups = dict[str, list[tuple[str, nn.Parameter]]]
#: Elements of each parameter kept for the "did the weights move" comparison.
SAMPLE = 1024


def module_kind(name: str) -> Optional[str]:
    """``...layers.3.mlp.down_proj.lora_B.default.weight`` -> ``down_proj``; None elsewhere."""
    return lora_kind(name)


def split_units(groups: Groups) -> OrderedDict[str, list[tuple[str, nn.Parameter]]]:
    """Groups -> units: ``lora`` split per module kind (``lora.q_proj``), the others as they are."""
    units: OrderedDict[str, list[tuple[str, nn.Parameter]]] = OrderedDict()
    for group, params in groups.items():
        kinds = [module_kind(n) for n, _ in params] if group == 'lora' else [None] * len(params)
        if None in kinds:  # not every parameter has a kind (e.g. the toy model): one unit
            units[group] = list(params)
            continue
        for (name, p), kind in zip(params, kinds):
            units.setdefault(f'{group}.{kind}', []).append((name, p))
    return units


def group_of(unit: str) -> str:
    return unit.split('.', 1)[0]


def name_units(units: list[str], all_units: list[str]) -> str:
    """Comma-separated names, a group named once when all of its units are listed."""
    out: list[str] = []
    for unit in units:
        group = group_of(unit)
        members = [u for u in all_units if group_of(u) == group]
        if len(members) > 1 and all(m in units for m in members):
            if group not in out:
                out.append(group)
        else:
            out.append(unit)
    return ', '.join(out)


def mask_loss_representatives(params: list[tuple[str, nn.Parameter]]) -> list[nn.Parameter]:
    """Parameters whose mask-loss gradient stands for a unit: a LoRA kind's first ``lora_B``
    (``lora_A`` gets exactly zero on the first step, since ``B`` starts at zero), else all."""
    lora_b = [p for n, p in params if is_lora_b(n)]
    return lora_b[:1] if lora_b else [p for _, p in params]


def _all_reduce(tensor: torch.Tensor, op: Any = None) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor, op=op or dist.ReduceOp.SUM)
    return tensor


class ParamProbe:
    """Per-unit gradient norms and weight samples of one run (see the module docstring)."""

    def __init__(
        self,
        units: OrderedDict[str, list[tuple[str, nn.Parameter]]],
        engine: Optional[Any] = None,
        master_of: Optional[Callable[[torch.Tensor], Optional[torch.Tensor]]] = None,
    ) -> None:
        self.units = units
        self.engine = engine
        # the plain runner's fp32 masters (MasterWeightOptimWrapper.master_of): what AdamW updates
        self.master_of = master_of
        params = [p for ps in units.values() for _, p in ps]
        # ZeRO-1/2 links every parameter to its fp32 fragment (`_hp_mapping`, None on the ranks
        # that hold no part of it); other DeepSpeed stages fall back to safe_get_full_grad.
        self.fragments = engine is not None and all(hasattr(p, '_hp_mapping') for p in params)
        self.device = params[0].device if params else torch.device('cpu')
        self._owner_indices: dict[tuple[int, ...], torch.Tensor] = {}
        if dist.is_available() and dist.is_initialized() and dist.get_backend() == 'nccl':
            self.device = torch.device('cuda', torch.cuda.current_device())

    # -- gradients ------------------------------------------------------------------------------
    def _owner_index(self, owners: list[int]) -> torch.Tensor:
        """``owners`` as a device tensor, made once per distinct list (a fresh host-to-device copy
        every step would synchronise)."""
        key = tuple(owners)
        if key not in self._owner_indices:
            self._owner_indices[key] = torch.tensor(owners, dtype=torch.long).to(self.device)
        return self._owner_indices[key]

    def _grad(self, param: nn.Parameter) -> Optional[torch.Tensor]:
        if self.engine is None:
            return param.grad
        if not self.fragments:
            from deepspeed.utils import safe_get_full_grad

            return safe_get_full_grad(param)
        mapping = param._hp_mapping  # DeepSpeed's link to this rank's fragment (or None)
        if mapping is None:
            return None
        return mapping.get_lp_grad_fragment(param._index_in_param_group)

    def grad_squares(self, extra: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, list[bool]]:
        """Each unit's squared L2 gradient norm, then ``extra`` summed over the ranks in the same
        collective (e.g. a "bad loss" flag), as one vector left on the device (no host sync); and
        per unit whether any parameter has ``.grad`` (known on the host; always True under
        DeepSpeed)."""
        # One fused norm kernel per (device, dtype) over every gradient, then a sum per unit: a
        # handful of launches per step, not a few per unit (it runs every step, in the GPU's path).
        all_grads: list[torch.Tensor] = []
        owners: list[int] = []
        has_grad = []
        for u, params in enumerate(self.units.values()):
            grads = [g for g in (self._grad(p) for _, p in params) if g is not None]
            has_grad.append(bool(grads) or self.engine is not None)
            all_grads += grads
            owners += [u] * len(grads)
        vec = torch.zeros(len(self.units), device=self.device, dtype=torch.float32)
        if all_grads:
            norms = per_tensor_norms(all_grads, torch.float32, self.device)
            vec.index_add_(0, self._owner_index(owners), norms * norms)
        n = len(self.units)
        if extra is not None:
            vec = torch.cat([vec, extra.to(self.device, torch.float32).reshape(-1)])
        if self.fragments:  # local fragments: sum the squares over the ranks
            _all_reduce(vec)
        elif extra is not None and self.engine is None:
            _all_reduce(vec[n:])  # DDP gradients are global already; the flag is not
        return vec, has_grad

    def read_norms(
        self, values: torch.Tensor, has_grad: list[bool], scale: float = 1.0
    ) -> tuple[OrderedDict[str, Optional[float]], Optional[torch.Tensor]]:
        """:meth:`grad_squares`' vector, on the host, as :meth:`grad_norms` returns it."""
        n = len(self.units)
        norms: OrderedDict[str, Optional[float]] = OrderedDict()
        for (unit, _), seen, sq in zip(self.units.items(), has_grad, values[:n]):
            norms[unit] = float(sq.sqrt()) / scale if seen else None
        return norms, (values[n:] if values.numel() > n else None)

    def grad_norms(
        self, scale: float = 1.0, extra: Optional[torch.Tensor] = None
    ) -> tuple[OrderedDict[str, Optional[float]], Optional[torch.Tensor]]:
        """L2 gradient norm of every unit (None: no parameter has ``.grad``, plain runner only),
        and ``extra`` summed over the ranks in the same collective (e.g. a "bad loss" flag).
        Reads the values at once (a device synchronisation)."""
        vec, has_grad = self.grad_squares(extra)
        return self.read_norms(vec.cpu(), has_grad, scale)

    # -- weights --------------------------------------------------------------------------------
    def _master(self, param: nn.Parameter) -> Optional[torch.Tensor]:
        """What the optimizer updates: this rank's fp32 fragment under ZeRO-1/2, else the weight."""
        if not self.fragments:
            if self.engine is None and self.master_of is not None:
                master = self.master_of(param)
                return param if master is None else master
            if self.engine is not None:
                from deepspeed.utils import safe_get_full_fp32_param

                full = safe_get_full_fp32_param(param)
                return param if full is None else full
            return param
        mapping = param._hp_mapping
        return None if mapping is None else mapping.get_hp_fragment()

    def sample_weights(self) -> list[Optional[torch.Tensor]]:
        """A copy of at most :data:`SAMPLE` evenly spaced elements of each unit's parameters."""
        samples: list[Optional[torch.Tensor]] = []
        for params in self.units.values():
            parts = []
            for _, p in params:
                t = self._master(p)
                if t is None or t.numel() == 0:
                    continue
                flat = t.detach().reshape(-1)
                parts.append(flat[:: max(1, flat.numel() // SAMPLE)][:SAMPLE])
            samples.append(torch.cat(parts).clone() if parts else None)
        return samples

    def changed(
        self, before: list[Optional[torch.Tensor]], after: list[Optional[torch.Tensor]]
    ) -> OrderedDict[str, bool]:
        """Per unit: did any sampled element change (on any rank)."""
        flags = [
            torch.zeros((), device=self.device) if b is None else (b != a).any().to(self.device, torch.float32)
            for b, a in zip(before, after)
        ]
        vec = torch.stack(flags)
        if self.fragments:
            _all_reduce(vec, dist.ReduceOp.MAX)
        return OrderedDict((u, bool(f > 0)) for u, f in zip(self.units, vec.cpu()))


def nonfinite_parameters(model: nn.Module) -> list[str]:
    """Names of the trainable parameters of ``model`` holding a NaN or an inf."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        return []
    finite = torch.stack([torch.isfinite(p.detach()).all().cpu() for _, p in named])
    return [n for (n, _), ok in zip(named, finite.tolist()) if not ok]

"""bf16 trainables with fp32 master copies for the plain runner: what ZeRO-2 does, without ZeRO.

The model is built with fp32 trainables over a bf16 frozen base, so that AdamW's small updates are
not rounded away. Run that way, every forward runs under autocast, which casts each fp32 trainable
to bf16 again in every forward and its gradient back to fp32 in every backward (calls 44-45: the
plain runner's forward took 151-155 ms at 2B b8 against 120 ms under ZeRO-2, whose weights are
bf16). With :class:`MasterWeightOptimWrapper` the trainables themselves take the base's dtype for
forward and backward, and the optimizer updates fp32 master copies of them:

    backward (bf16 grads) -> copy the grads into the masters' fp32 grads -> clip and AdamW on the
    masters (fp32) -> copy the masters back into the bf16 weights

So the weights the forward sees are the masters rounded to bf16, and an update too small to move
a bf16 weight still accumulates in its master.

When it happens: :class:`MasterWeightsHook` attaches the masters in ``before_train``, after mmengine
has loaded a checkpoint (``load_from`` or resume) into the fp32 weights, so the masters start from
the exact fp32 values. Checkpoints keep the fp32 values: the hook writes each master into the
model's state dict before a checkpoint is written (the same file as without masters, and a resume
is exact). ``after_train`` gives the model its fp32 weights back.

Cost: 4 bytes per trainable parameter more than fp32 trainables (a bf16 weight and gradient beside
the fp32 master, its gradient and AdamW's two moments: 20 bytes against 16). One process only: DDP
builds its gradient buckets for the weights' dtype when it wraps the model.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from torch import nn

from ..registry import HOOKS, OPTIM_WRAPPERS
from .optim_wrapper import SyncFreeOptimWrapper
from .utils import unwrap_model

MASTER_DTYPE = torch.float32


def frozen_float_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """The floating dtype most of the model's frozen parameters have (None: nothing frozen).

    4-bit bases (bitsandbytes) store their weights as uint8 and are not counted; their norms and
    embeddings carry the compute dtype."""
    counts = Counter(p.dtype for p in model.parameters() if not p.requires_grad and p.is_floating_point())
    return counts.most_common(1)[0][0] if counts else None


@OPTIM_WRAPPERS.register_module()
class MasterWeightOptimWrapper(SyncFreeOptimWrapper):
    """``SyncFreeOptimWrapper`` whose optimizer updates fp32 masters of low-precision trainables.

    Until :meth:`attach_masters` it is a ``SyncFreeOptimWrapper``. After it, the optimizer's
    parameters are the masters, and :meth:`step` copies the gradients in and the weights out
    around clipping and the optimizer's step (module docstring).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._weights: list[nn.Parameter] = []  # the model's trainables, in the compute dtype
        self._masters: list[nn.Parameter] = []  # their fp32 masters, the optimizer's parameters
        self._master_grads: list[torch.Tensor] = []  # fp32 gradient buffers, reused every step
        self._master_of: dict[int, nn.Parameter] = {}

    # -- attach / detach ----------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return bool(self._masters)

    def attach_masters(self, dtype: torch.dtype) -> int:
        """Give every trainable of the optimizer ``dtype`` and keep its fp32 value as a master.

        The optimizer's state (AdamW's moments, e.g. after a resume) moves to the masters. Returns
        how many parameters it converted."""
        if self.attached:
            raise RuntimeError('MasterWeightOptimWrapper: masters are attached already')
        for group in self.optimizer.param_groups:
            masters = []
            for weight in group['params']:
                if not weight.requires_grad:  # mmengine's constructor also lists frozen parameters
                    masters.append(weight)
                    continue
                if weight.dtype != MASTER_DTYPE:
                    raise ValueError(
                        f'MasterWeightOptimWrapper: a trainable parameter {tuple(weight.shape)} is '
                        f'{weight.dtype}; masters are made from fp32 trainables (write '
                        "model.trainable_dtype='float32')"
                    )
                master = nn.Parameter(weight.detach().clone())
                if weight in self.optimizer.state:
                    self.optimizer.state[master] = self.optimizer.state.pop(weight)
                weight.data = weight.data.to(dtype)
                weight.grad = None
                self._weights.append(weight)
                self._masters.append(master)
                self._master_of[id(weight)] = master
                masters.append(master)
            group['params'] = masters
        self._master_grads = [torch.empty_like(m) for m in self._masters]
        return len(self._masters)

    def detach_masters(self) -> None:
        """Give the model its fp32 weights (the masters) back and the optimizer its parameters."""
        if not self.attached:
            return
        back = {id(m): w for w, m in zip(self._weights, self._masters)}
        for group in self.optimizer.param_groups:
            weights = []
            for master in group['params']:
                weight = back.get(id(master))
                if weight is None:  # a frozen parameter, never converted
                    weights.append(master)
                    continue
                weight.data = master.detach()
                weight.grad = None
                if master in self.optimizer.state:
                    self.optimizer.state[weight] = self.optimizer.state.pop(master)
                weights.append(weight)
            group['params'] = weights
        self._weights, self._masters, self._master_grads, self._master_of = [], [], [], {}

    def master_of(self, weight: torch.Tensor) -> Optional[torch.Tensor]:
        """The fp32 master the optimizer updates for ``weight`` (None: it has none)."""
        return self._master_of.get(id(weight))

    # -- the step -----------------------------------------------------------------------------
    def step(self, **kwargs: Any) -> None:
        if not self.attached:
            return super().step(**kwargs)
        self._grads_to_masters()
        super().step(**kwargs)  # clips the masters' gradients, then the optimizer's step
        with torch.no_grad():
            # torch's multi-tensor copy (as torch.optim uses): a few launches for every trainable
            torch._foreach_copy_(self._weights, self._masters)

    def zero_grad(self, **kwargs: Any) -> None:
        super().zero_grad(**kwargs)
        for weight in self._weights:
            weight.grad = None

    def _grads_to_masters(self) -> None:
        pairs = [
            (w.grad, g, m) for w, g, m in zip(self._weights, self._master_grads, self._masters) if w.grad is not None
        ]
        if not pairs:
            return
        grads, buffers, masters = zip(*pairs)
        torch._foreach_copy_(list(buffers), list(grads))
        for buffer, master in zip(buffers, masters):
            master.grad = buffer  # a weight without a gradient leaves its master's None: no step

    # -- checkpoints --------------------------------------------------------------------------
    def masters_into_state_dict(self, model: nn.Module, state_dict: dict) -> int:
        """Replace each trainable's entry of ``model``'s state dict by its fp32 master; returns
        how many it replaced."""
        replaced = 0
        for name, weight in model.named_parameters():
            master = self.master_of(weight)
            if master is not None and name in state_dict:
                value = state_dict[name]
                state_dict[name] = master.detach().to(value.device, copy=True)
                replaced += 1
        return replaced


@HOOKS.register_module()
class MasterWeightsHook(Hook):
    """Attach :class:`MasterWeightOptimWrapper`'s masters before training and detach them after;
    write the fp32 masters into every checkpoint (module docstring).

    The compute dtype is the model's frozen base's (:func:`frozen_float_dtype`). With an fp32 base
    (the CPU) there is nothing to round, and the wrapper stays a ``SyncFreeOptimWrapper``.
    """

    priority = 'HIGHEST'  # before the gradient guard samples the weights it will compare

    def before_train(self, runner: Any) -> None:
        wrapper = runner.optim_wrapper
        if not isinstance(wrapper, MasterWeightOptimWrapper):
            raise TypeError(
                f'MasterWeightsHook needs optim_wrapper.type=MasterWeightOptimWrapper; got {type(wrapper).__name__}'
            )
        model = unwrap_model(runner.model)
        dtype = frozen_float_dtype(model)
        if dtype is None or dtype == MASTER_DTYPE:
            print_log(
                f'master weights: the frozen base is {dtype}; the trainables stay fp32 (nothing to round)',
                logger='current',
            )
            return
        if is_model_wrapper(runner.model):
            raise ValueError(
                f'MasterWeightOptimWrapper converts the trainables to {dtype} after the model is '
                f'built, which {type(runner.model).__name__} cannot follow (its gradient buckets '
                'have the fp32 dtype). It trains one process; several processes train with ZeRO-2 '
                "(deepspeed='deepspeed_zero2') or with fp32 trainables (optim_wrapper.type="
                "'SyncFreeOptimWrapper', master_weights=False)."
            )
        count = wrapper.attach_masters(dtype)
        print_log(
            f'master weights: {count} trainable tensors run in {dtype}; AdamW updates their fp32 masters',
            logger='current',
        )

    def after_train(self, runner: Any) -> None:
        runner.optim_wrapper.detach_masters()

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict')
        wrapper = runner.optim_wrapper
        if state_dict is not None and isinstance(wrapper, MasterWeightOptimWrapper) and wrapper.attached:
            wrapper.masters_into_state_dict(unwrap_model(runner.model), state_dict)

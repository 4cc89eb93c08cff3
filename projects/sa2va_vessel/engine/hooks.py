"""Runner hooks: the gradient-flow guard and trainable-only checkpoints.

The gradient-flow guard watches the whole run
---------------------------------------------
It stops the run with a ``RuntimeError`` that names the groups (or LoRA module kinds, see
:mod:`.guard_probe`) and the iteration, when

* before training: a group the config switches on has no trainable parameter
  (``model.trainable_groups()`` lists every switched-on group, empty when frozen);
* before the first backward: the loss has no autograd path to a unit;
* on the first step: the mask losses alone (``autograd.grad`` of ``loss_mask + loss_dice``,
  graph retained, for one representative parameter per unit) give a unit no gradient: the LLM
  loss would then hide that masks teach LoRA, the ``[SEG]`` rows or the projector nothing;
* after every backward that ends in an optimizer step (before that step): a unit's gradient is
  missing, exactly zero, or non-finite, or a loss part is non-finite. Nothing has been updated
  and no checkpoint written for this iteration yet (read one step late: see below);
* after the first optimizer step and then every ``window`` iterations: a unit's weights did not
  change since the last check (a skipped ``step()``, lr 0, parameters not in the optimizer).

How it sees gradients in both runners
-------------------------------------
``OptimWrapper``/``AmpOptimWrapper`` and ``DeepSpeedOptimWrapper`` implement
``update_params(loss)`` as ``self.backward(loss)`` then ``self.step()``, and the gradients are
gone after it, so the guard replaces ``backward`` and ``step`` on the optimizer-wrapper
*instance* at ``before_train`` (and restores them at ``after_train``). The per-loss values come
from a forward hook on the model. Its own time goes to the message hub as ``train/guard_ms`` (in
the log line and TensorBoard as ``guard_ms``), measured on the first update, every log interval
and the last iteration (measuring synchronises the device); the one-time mask-loss check is
logged on its own line.

Read one step late
------------------
Reading the gradient norms on the host (``.cpu()``) waits for the whole backward on a GPU, and
the GPU then idles while the host launches the optimizer step and the next iteration. Where it
is safe (``lagged=None``: on CUDA, torch's Adam/AdamW with ``fused=True``, no loss scaler, no
fp16), the check of an update is computed on the device into a flag, "some unit's squared norm
is zero or non-finite, or a loss is non-finite", kept sticky and set as the torch optimizer's
``found_inf`` (under DeepSpeed the AdamW inside ZeRO's optimizer, see :func:`stepping_optimizer`):
the fused kernel then leaves the weights, the moments and the step counts as they were, and
ZeRO-2 copies the unchanged fp32 partition back to the bf16 weights. The norms go to pinned host
memory behind an event (:class:`.utils.HostCopy`) and are read at the next update's check, before
a checkpoint is written, before validation and at the end of training, where the error says
that the step of iteration K and any after it were skipped on the device. The first update
(its one-time checks and log line), the logged iterations (they need the values) and a unit
without any ``.grad`` (known on the host) stay synchronous.

The hook's own default is ``lagged=False``; the shipped runtime (``configs/_base_/default_runtime.py``)
sets ``lagged=None``: side by side on one H200 at micro-batch 8 it gave 27.69 samples/s against
23.42 synchronous (docs/bench/call36).
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from mmengine.hooks import Hook
from torch import nn

from ..models.training_checkpoint import fill_frozen_from_model, trainable_only_state
from ..registry import HOOKS
from .guard_probe import ParamProbe, group_of, mask_loss_representatives, name_units, split_units
from .utils import HostCopy, deepspeed_engine_of, logger_interval, unwrap_model

Groups = dict[str, list[tuple[str, nn.Parameter]]]

_LIKELY_CAUSES = (
    'Likely causes: the path from these parameters to the loss runs under torch.no_grad() / '
    'torch.inference_mode() or through generate(); an output on that path is .detach()-ed or '
    'leaves autograd (.item(), .numpy(), re-created tensors); or the loss was rebuilt with '
    '.detach().requires_grad_(True), which lets backward() run while no parameter receives a '
    'gradient.'
)


def nonempty_trainable_groups(model: nn.Module) -> Groups:
    """The model's trainable groups without the empty ones (the guard and the monitoring hooks)."""
    groups = {g: ps for g, ps in _switched_on_groups(model).items() if ps}
    if not groups:
        raise RuntimeError(
            'model.trainable_groups() returned no trainable parameter: nothing '
            'would be trained. Check the config switches that unfreeze parts.'
        )
    return groups


def _switched_on_groups(model: nn.Module) -> Groups:
    """Every group the config switches on, with its parameters that require grad."""
    if not hasattr(model, 'trainable_groups'):
        raise TypeError(
            f'{type(model).__name__} has no trainable_groups(); the model contract '
            '(docs/ARCHITECTURE.md) requires it for the gradient guard.'
        )
    return {g: [(n, p) for n, p in params if p.requires_grad] for g, params in model.trainable_groups().items()}


def reachable_parameters(loss: torch.Tensor) -> tuple[set[int], bool]:
    """ids of the leaf tensors the loss's autograd graph reaches, and whether part of the
    graph is hidden behind a reentrant checkpoint (whose inner parameters are not visible)."""
    reachable: set[int] = set()
    hidden = False
    seen: set[Any] = set()  # holds the node objects, so their ids stay unique
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if 'Checkpoint' in type(node).__name__:
            hidden = True
        variable = getattr(node, 'variable', None)  # AccumulateGrad nodes hold the leaf
        if variable is not None:
            reachable.add(id(variable))
        stack.extend(nxt for nxt, _ in node.next_functions if nxt is not None)
    return reachable, hidden


def stepping_optimizer(optim_wrapper: Any) -> Optional[torch.optim.Optimizer]:
    """The torch optimizer whose ``step()`` updates the weights: ``optim_wrapper.optimizer`` in the
    plain runner; under DeepSpeed that is ZeRO's optimizer, whose ``.optimizer`` is torch's."""
    optimizer = getattr(optim_wrapper, 'optimizer', None)
    for _ in range(4):  # wrapper -> ZeRO optimizer -> torch optimizer; bounded in case of a cycle
        if optimizer is None or isinstance(optimizer, torch.optim.Optimizer):
            return optimizer
        optimizer = getattr(optimizer, 'optimizer', None)
    return None


@dataclass
class _LateCheck:
    """One update's gradient check, on its way to the host (read at the next update)."""

    iteration: int  # 1-based, the iteration whose optimizer step it guards
    copy: HostCopy  # squared norm per unit, the bad-loss flag, then this rank's loss values
    has_grad: list[bool]
    scale: float
    loss_names: list[str]


@HOOKS.register_module()
class GradientFlowGuardHook(Hook):
    """Stop the run when a trainable unit gets no gradient, a bad one, or does not move.

    Args:
        interval: log ``grad_norm/<group>`` every this many iterations. ``None`` uses the
            LoggerHook's interval, so every logged line has a fresh value.
        window: check every this many iterations that each unit's weights changed (rounded
            up to a multiple of the gradient-accumulation count). ``None``: the log interval.
        check: run the checks (switch off only to debug a known-broken model).
        log_parameter_table: log ``model.parameter_table()`` before training.
        mask_losses: the loss parts that must, alone, reach every unit on the first step
            (``()`` skips that check).
        lagged: read the per-step gradient check one update late (see "Read one step late" in
            the module docstring). ``False`` (default): always synchronous; ``None``: on CUDA
            when the optimizer is a fused torch Adam/AdamW and no loss scaler runs; ``True``
            forces it (a ValueError when the optimizer cannot skip its step on the device).
    """

    priority = 'VERY_HIGH'  # patch the optimizer wrapper before any other hook uses it

    def __init__(
        self,
        interval: Optional[int] = None,
        window: Optional[int] = None,
        check: bool = True,
        log_parameter_table: bool = True,
        mask_losses: tuple[str, ...] = ('loss_mask', 'loss_dice'),
        lagged: Optional[bool] = False,
    ) -> None:
        for arg, value in (('interval', interval), ('window', window)):
            if value is not None and value < 1:
                raise ValueError(f'{arg} must be >= 1, got {value}')
        self.interval = interval
        self.window = window
        self.check = check
        self.log_parameter_table = log_parameter_table
        self.mask_losses = tuple(mask_losses)
        self.lagged = lagged
        #: how many per-step checks of the last run were read one update late
        self.lagged_checks = 0
        self._originals: dict[str, Callable] = {}
        self._hook_handle: Any = None
        self._pending: Optional[_LateCheck] = None
        self._lag_optimizer: Optional[torch.optim.Optimizer] = None

    # -- hook points --------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        model = unwrap_model(runner.model)
        self._runner = runner
        switched = _switched_on_groups(model)
        empty = [g for g, ps in switched.items() if not ps]
        if empty and self.check:
            raise RuntimeError(
                'GradientFlowGuardHook: before iteration 1, these groups are switched on in the '
                f'config (model.trainable) but have no trainable parameter: {", ".join(empty)}. '
                'Something froze them after the model was built (requires_grad_(False), peft '
                'enable_adapters(False) / disable_adapter()), or the switch names a part the '
                'model lacks. Switch them off in the config, or find what froze them.'
            )
        self._groups = nonempty_trainable_groups(model)
        self._units = split_units(self._groups)
        self._engine = deepspeed_engine_of(runner.model)
        self._probe = ParamProbe(self._units, self._engine, getattr(runner.optim_wrapper, 'master_of', None))
        if self.interval is None:
            self.interval = logger_interval(runner)
        accum = self._accumulation(runner.optim_wrapper)
        window = self.window or self.interval
        self._window = -(-window // accum) * accum  # weights move only at update boundaries
        self._accum = accum
        if self.log_parameter_table and hasattr(model, 'parameter_table'):
            runner.logger.info('Parameter table:\n' + model.parameter_table())
        summary = ', '.join(f'{g} ({sum(p.numel() for _, p in ps)} params)' for g, ps in self._groups.items())
        runner.logger.info(f'Trainable groups: {summary}')
        # state of the checks
        self._graph_checked = not self.check
        self._mask_checked = not (self.check and self.mask_losses)
        self._first_update_checked = not self.check
        self._first_backward = True
        self._losses: Optional[dict] = None
        self._ms = 0.0
        self._start_iter = runner.iter
        self._ref = self._probe.sample_weights() if self.check else None
        self._ref_iter = runner.iter
        self._steps = self._skipped = 0
        self._pending, self.lagged_checks = None, 0
        self._lag_optimizer = self._lag_target(runner.optim_wrapper) if self.check else None
        if self._lag_optimizer is not None:
            # The flag the fused step reads: non-zero leaves params and moments untouched (and
            # takes the step count back). One tensor for the run, updated in place on the device.
            self._skip = torch.zeros((), dtype=torch.float32, device=self._probe.device)
            self._lag_optimizer.found_inf = self._skip
        self._hook_handle = model.register_forward_hook(self._capture_losses)
        self._patch(runner.optim_wrapper)

    def after_train(self, runner: Any) -> None:
        try:
            self._resolve_pending()  # the last step's check, before anything reads the weights
        finally:
            self._release_skip()
            self._unpatch(runner.optim_wrapper)
            if self._hook_handle is not None:
                self._hook_handle.remove()
                self._hook_handle = None

    # A lagged check still pending is resolved before anything uses the weights of that step.
    def before_checkpoint_write(self, runner: Any) -> None:
        """Called by the project's runners before every checkpoint write, on both runners
        (mmengine's DeepSpeed strategy never calls ``before_save_checkpoint``)."""
        self._resolve_pending()

    def before_val(self, runner: Any) -> None:  # ValLoop.run calls it before every validation
        self._resolve_pending()

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        done = runner.iter + 1
        since_start = done - self._start_iter
        if (
            self.check
            and since_start % self._accum == 0
            and (not self._first_update_checked or done % self._window == 0)
        ):
            with self._timed():
                self._resolve_pending()  # a skipped step would otherwise read as "did not move"
                self._check_weights_moved(done)
        if self._timing_now():
            runner.message_hub.update_scalar('train/guard_ms', self._ms)
        self._ms = 0.0

    # -- patching -----------------------------------------------------------------------------
    def _patch(self, optim_wrapper: Any) -> None:
        if not (hasattr(optim_wrapper, 'backward') and hasattr(optim_wrapper, 'step')):
            raise TypeError(
                f'GradientFlowGuardHook needs an optimizer wrapper with backward() '
                f'and step(); got {type(optim_wrapper).__name__} (an '
                'OptimWrapperDict is not supported).'
            )
        # Remember instance-level attributes (mmengine's param schedulers wrap `step` with a
        # counter on the instance) so after_train restores exactly what was there.
        self._originals = {name: optim_wrapper.__dict__.get(name) for name in ('backward', 'step')}
        orig_backward, orig_step = optim_wrapper.backward, optim_wrapper.step

        @functools.wraps(orig_backward)
        def backward(loss: torch.Tensor, **kwargs: Any) -> None:
            self._before_backward(loss)
            orig_backward(loss, **kwargs)
            if self._is_update_boundary(optim_wrapper):
                with self._timed():
                    self._check_grads(optim_wrapper)
            self._losses = None

        @functools.wraps(orig_step)  # keeps `_with_counter`, which the schedulers check
        def step(**kwargs: Any) -> Any:
            if not self._is_update_boundary(optim_wrapper):
                return orig_step(**kwargs)
            skip_state = self._skip_state(optim_wrapper)
            out = orig_step(**kwargs)
            self._steps += 1
            self._skipped += int(self._skip_state(optim_wrapper) != skip_state)
            return out

        # Instance attributes shadow the class methods; update_params() calls self.backward()
        # and self.step(), so the patch is seen by both mmengine runners.
        optim_wrapper.backward = backward
        optim_wrapper.step = step

    def _unpatch(self, optim_wrapper: Any) -> None:
        for name, original in self._originals.items():
            if original is None:
                optim_wrapper.__dict__.pop(name, None)
            else:
                optim_wrapper.__dict__[name] = original
        self._originals = {}

    def _capture_losses(self, module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, dict):  # mode='loss'; predict returns a list
            self._losses = output

    def _timing_now(self) -> bool:
        """Whether this iteration's guard time is measured and logged: the first update (its
        one-time checks), every log interval and the last iteration. Measuring synchronises
        the device twice, which stalls the queue of GPU work; the other iterations do not pay it."""
        runner = self._runner
        done = runner.iter + 1
        return done - self._start_iter <= self._accum or done % self.interval == 0 or done >= runner.max_iters

    class _Timer:
        def __init__(self, hook: 'GradientFlowGuardHook') -> None:
            self.hook = hook

        def __enter__(self) -> None:
            self.measure = self.hook._timing_now()
            if self.measure:
                _sync_cuda()  # time the guard's work, not the backward still queued on the GPU
            self.t0 = time.perf_counter()

        def __exit__(self, *exc: Any) -> None:
            if self.measure:
                _sync_cuda()
                self.hook._ms += (time.perf_counter() - self.t0) * 1e3

    def _timed(self) -> '_Timer':
        return self._Timer(self)

    # -- before the first backward ------------------------------------------------------------
    def _before_backward(self, loss: torch.Tensor) -> None:
        if not self._first_backward:
            return
        self._first_backward = False
        if not self._graph_checked:
            self._graph_checked = True
            self._check_graph(loss)
        if not self._mask_checked:
            self._mask_checked = True
            t0 = time.perf_counter()
            self._check_mask_losses()
            self._runner.logger.info(
                f'GradientFlowGuardHook: the mask losses reach every '
                f'trainable unit ({(time.perf_counter() - t0) * 1e3:.0f} ms, '
                'once).'
            )

    def _check_graph(self, loss: torch.Tensor) -> None:
        """Fail before backward when the loss has no autograd path to a unit.

        Needed because a dead group does not always reach the gradient check: DeepSpeed ZeRO-2
        crashes inside ``engine.backward`` (IndexError in ``reduce_ipg_grads``) when no
        parameter got a gradient. Walking ``loss.grad_fn`` costs no compute. Reentrant
        activation checkpointing hides the parameters inside the checkpointed blocks from the
        outer graph, so then this check stands aside and the gradient check decides.
        """
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise RuntimeError(
                'GradientFlowGuardHook: the training loss does not require '
                'grad, so no trainable group can learn. ' + _LIKELY_CAUSES
            )
        reachable, hidden = reachable_parameters(loss)
        if hidden:
            return
        dead = [u for u, params in self._units.items() if not any(id(p) in reachable for _, p in params)]
        if not dead:
            return
        alive = [u for u in self._units if u not in dead]
        units = list(self._units)
        raise RuntimeError(
            'GradientFlowGuardHook: before the first backward, the loss has no autograd path '
            f'to these trainable groups: {name_units(dead, units)}. They would get no gradient.\n'
            f'  groups that are connected: {name_units(alive, units) or "none"}\n  ' + _LIKELY_CAUSES
        )

    def _check_mask_losses(self) -> None:
        """The mask losses alone must give every unit a non-zero gradient (first step only).

        Plain runner: ``autograd.grad`` of the mask losses for one representative parameter per
        unit; it returns the gradients instead of accumulating them into ``.grad``, and
        ``retain_graph`` keeps the graph for the real backward: one extra backward pass, once.
        DeepSpeed runs its gradient-reduction epilogue after *any* backward through the model,
        so there the check walks the mask losses' autograd graph instead (no compute); it sees
        a cut path (``.detach()``, ``no_grad``) but not a path multiplied by zero.
        """
        losses = self._losses or {}
        parts = [losses[k] for k in self.mask_losses if k in losses]
        if not parts:
            raise RuntimeError(
                f'GradientFlowGuardHook: the model returned none of the mask '
                f'losses {self.mask_losses} (got {sorted(losses)}); set the '
                "hook's mask_losses to the loss parts that train the masks."
            )
        total = sum(p.float() for p in parts)
        if self._engine is not None:
            reachable, hidden = reachable_parameters(total) if total.requires_grad else (set(), False)
            if hidden:
                return
            dead = [u for u, ps in self._units.items() if not any(id(p) in reachable for _, p in ps)]
        else:
            dead = self._units_without_mask_grad(total)
        if dead:
            names = ', '.join(k for k in self.mask_losses if k in losses)
            raise RuntimeError(
                f'GradientFlowGuardHook: at iteration {self._runner.iter + 1}, the mask losses '
                f'({names}) alone give these trainable groups no gradient: '
                f'{name_units(dead, list(self._units))}. Only the LLM loss reaches them, so '
                'they learn nothing about masks (the no-grad bug in another form). Look for a '
                '.detach() / no_grad between them and the mask decoder, e.g. on the [SEG] '
                'hidden state before text_hidden_fcs.'
            )

    def _units_without_mask_grad(self, total: torch.Tensor) -> list[str]:
        reps = {u: mask_loss_representatives(ps) for u, ps in self._units.items()}
        flat = [p for ps in reps.values() for p in ps]
        if total.requires_grad:
            grads = torch.autograd.grad(total, flat, retain_graph=True, allow_unused=True)
        else:
            grads = (None,) * len(flat)
        by_param = {id(p): g for p, g in zip(flat, grads)}
        dead = []
        for unit, ps in reps.items():
            got = [by_param[id(p)] for p in ps if by_param[id(p)] is not None]
            if not got or float(torch.nn.utils.get_total_norm(got)) == 0.0:
                dead.append(unit)
        return dead

    # -- read one step late -------------------------------------------------------------------
    def _lag_target(self, optim_wrapper: Any) -> Optional[torch.optim.Optimizer]:
        """The torch optimizer to skip steps on (``found_inf``) when the check is read one update
        late; None when the check stays synchronous."""
        if self.lagged is False:
            return None
        optimizer = stepping_optimizer(optim_wrapper)
        # Only the fused Adam/AdamW kernels honour found_inf (the others assert it is unset), and a
        # GradScaler sets and removes found_inf itself on every step.
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        usable = (
            optimizer is not None
            and bool(getattr(optimizer, '_step_supports_amp_scaling', False))
            and not hasattr(optimizer, 'found_inf')
            and not (scaler is not None and scaler.is_enabled())
            and not self._overflow_is_normal(optim_wrapper)
        )
        if self.lagged is None:
            return optimizer if usable and self._probe.device.type == 'cuda' else None
        if not usable:
            raise ValueError(
                'GradientFlowGuardHook(lagged=True) needs an optimizer that can skip its step on '
                "the device: torch's Adam/AdamW with fused=True, no loss scaler, no fp16; got "
                f'{type(optimizer).__name__} with {type(optim_wrapper).__name__}.'
            )
        return optimizer

    def _release_skip(self) -> None:
        """Take ``found_inf`` off the optimizer again (training ended or stopped)."""
        if self._lag_optimizer is not None:
            self._lag_optimizer.__dict__.pop('found_inf', None)
            self._lag_optimizer = None

    def _check_late(
        self, squares: torch.Tensor, has_grad: list[bool], scale: float, losses: dict[str, torch.Tensor]
    ) -> None:
        """Skip this step on the device if it is bad, and start its copy to the host."""
        n = len(self._units)
        sq = squares[:n]
        bad = ((sq == 0) | ~torch.isfinite(sq)).any() | (squares[n] > 0)
        # sticky: once a step is skipped, every later one is too, until the check raises
        torch.maximum(self._skip, bad.float(), out=self._skip)
        record = squares
        if losses:  # this rank's loss values, for the message
            parts = torch.stack([v.detach().float().mean() for v in losses.values()]).to(squares.device)
            record = torch.cat([squares, parts])
        self._pending = _LateCheck(self._runner.iter + 1, HostCopy(record), has_grad, scale, list(losses))
        self.lagged_checks += 1

    def _resolve_pending(self) -> None:
        """Read the pending lagged check (its copy finished long ago) and raise if it was bad."""
        late, self._pending = self._pending, None
        if late is None:
            return
        values = late.copy.get()
        n = len(self._units)
        norms, extra = self._probe.read_norms(values[: n + 1], late.has_grad, late.scale)
        losses = dict(zip(late.loss_names, values[n + 1 :].tolist()))
        self._verdict(norms, extra, losses, late.iteration, first=False, late=True)

    # -- gradients ----------------------------------------------------------------------------
    @staticmethod
    def _accumulation(optim_wrapper: Any) -> int:
        engine = getattr(optim_wrapper, 'model', None)
        if engine is not None and hasattr(engine, 'gradient_accumulation_steps'):
            return max(1, int(engine.gradient_accumulation_steps()))
        return max(1, int(getattr(optim_wrapper, '_accumulative_counts', 1)))

    def _is_update_boundary(self, optim_wrapper: Any) -> bool:
        if self._engine is not None:
            return bool(self._engine.is_gradient_accumulation_boundary())
        return bool(optim_wrapper.should_update())

    def _loss_scale(self, optim_wrapper: Any) -> float:
        # AmpOptimWrapper's backward multiplies the loss by the GradScaler's scale.
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        if scaler is not None and hasattr(scaler, 'get_scale') and scaler.is_enabled():
            return float(scaler.get_scale())
        return 1.0

    def _overflow_is_normal(self, optim_wrapper: Any) -> bool:
        """fp16 with a dynamic loss scale: an inf gradient means "skip and lower the scale"."""
        if self._engine is not None:
            return bool(self._engine.fp16_enabled())
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        return (
            scaler is not None
            and scaler.is_enabled()
            and getattr(optim_wrapper, 'cast_dtype', None) in (None, torch.float16)
        )

    def group_grad_norms(self, optim_wrapper: Any) -> dict[str, Optional[float]]:
        """L2 norm of each group's gradient; ``None`` when no parameter of it has a gradient."""
        norms, _ = self._probe.grad_norms(self._loss_scale(optim_wrapper))
        return self._by_group(norms)

    def _by_group(self, norms: dict[str, Optional[float]]) -> dict[str, Optional[float]]:
        out: dict[str, Optional[float]] = OrderedDict()
        for unit, norm in norms.items():
            group = group_of(unit)
            if norm is None:
                out.setdefault(group, None)
            else:
                out[group] = math.sqrt((out.get(group) or 0.0) ** 2 + norm**2)
        return out

    def _check_grads(self, optim_wrapper: Any) -> None:
        """Every step, before the optimizer step: finite losses, a usable gradient per unit."""
        self._resolve_pending()  # the previous update's lagged check: its error comes first
        losses = {k: v for k, v in (self._losses or {}).items() if isinstance(v, torch.Tensor) and v.numel() > 0}
        bad_loss = torch.zeros(1)
        if losses:
            finite = torch.stack([torch.isfinite(v.detach()).all() for v in losses.values()])
            bad_loss = (~finite).any().float().reshape(1)
        scale = self._loss_scale(optim_wrapper)
        squares, has_grad = self._probe.grad_squares(bad_loss)
        runner = self._runner
        done = runner.iter + 1
        logged = done % self.interval == 0
        first = self.check and not self._first_update_checked and done - self._start_iter <= self._accum
        # Lagged only where nothing needs the values now: not the first update (its one-time
        # checks and log line), not a logged one, and no unit without any gradient (known here).
        if self._lag_optimizer is not None and not first and not logged and all(has_grad):
            self._check_late(squares, has_grad, scale, losses)
            return
        norms, extra = self._probe.read_norms(squares.cpu(), has_grad, scale)
        if logged:
            for group, norm in self._by_group(norms).items():
                runner.message_hub.update_scalar(f'train/grad_norm/{group}', 0.0 if norm is None else norm)
        if not self.check:
            return
        if self._overflow_is_normal(optim_wrapper):
            norms = OrderedDict(
                (u, n) for u, n in norms.items() if n is None or math.isfinite(n)
            )  # the scaler skips the step
        self._verdict(norms, extra, losses, done, first=first, late=False)

    def _verdict(
        self,
        norms: OrderedDict[str, Optional[float]],
        extra: Optional[torch.Tensor],
        losses: dict[str, Any],
        iteration: int,
        first: bool,
        late: bool,
    ) -> None:
        """Raise when a unit's gradient is missing, zero or non-finite, or a loss is non-finite."""
        runner = self._runner
        missing = [u for u, n in norms.items() if n is None]
        zero = [u for u, n in norms.items() if n is not None and n == 0.0]
        bad = [u for u, n in norms.items() if n is not None and not math.isfinite(n)]
        loss_bad = bool(extra is not None and float(extra[0]) > 0)
        if first and not (missing or zero or bad or loss_bad):
            runner.logger.info(
                'GradientFlowGuardHook: every trainable group got a gradient: '
                + ', '.join(f'{g}={n:.3e}' for g, n in norms.items())
            )
        if not (missing or zero or bad or loss_bad):
            return
        units = list(self._units)
        where = 'after the first backward' if first else f'at iteration {iteration}, after the backward'
        ok = [f'{u} (|grad|={n:.3e})' for u, n in norms.items() if n is not None and n != 0.0 and math.isfinite(n)]
        if late:
            stopped = (
                'Seen one update late (the check is read at the next update): the optimizer step of '
                f'iteration {iteration} and any after it were skipped on the device, so the weights '
                f'and checkpoints are as after iteration {iteration - 1}.'
            )
        else:
            stopped = (
                'Stopped before the optimizer step: the weights and checkpoints are as after '
                f'iteration {iteration - 1}.'
            )
        lines = [f'GradientFlowGuardHook: {where}, trainable groups got no usable gradient. {stopped}']
        if missing:
            lines.append(f'  no gradient at all (.grad is None): {name_units(missing, units)}')
        if zero:
            lines.append(f'  gradient exactly zero: {name_units(zero, units)}')
        if bad:
            lines.append(
                f'  non-finite gradient (inf/nan): {name_units(bad, units)} -- check the '
                'loss for log(0)/division by zero and the mixed-precision setting'
            )
        if loss_bad:
            parts = ', '.join(f'{k}={_mean(v):.4g}' for k, v in losses.items())
            lines.append(f'  non-finite loss on some rank (this rank: {parts or "unknown"})')
        lines.append(f'  groups that did get a gradient: {", ".join(ok) or "none"}')
        if missing or zero:
            lines.append('  ' + _LIKELY_CAUSES)
        self._release_skip()  # the run stops here: leave no found_inf behind
        raise RuntimeError('\n'.join(lines))

    # -- weights ------------------------------------------------------------------------------
    def _skip_state(self, optim_wrapper: Any) -> tuple:
        # A dynamic loss scaler skips steps on overflow (fp16); that is not a dead group.
        if self._engine is not None:
            return (getattr(self._engine, 'skipped_steps', 0),)
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        if scaler is not None and hasattr(scaler, 'get_scale') and scaler.is_enabled():
            return (float(scaler.get_scale()),)
        return ()

    def _check_weights_moved(self, done: int) -> None:
        """Each unit's sampled weights must differ from the last check's."""
        now = self._probe.sample_weights()
        changed = self._probe.changed(self._ref, now)
        first = not self._first_update_checked
        span, steps, skipped = (self._ref_iter + 1, done), self._steps, self._skipped
        self._ref, self._ref_iter, self._steps, self._skipped = now, done, 0, 0
        self._first_update_checked = True
        unchanged = [u for u, c in changed.items() if not c]
        runner = self._runner
        if not unchanged:
            if first:
                runner.logger.info(
                    'GradientFlowGuardHook: every trainable group changed after the first optimizer step.'
                )
            return
        if steps and skipped == steps:  # fp16 overflow on every step of the window
            runner.logger.warning(
                f'GradientFlowGuardHook: all {steps} optimizer steps of '
                f'iterations {span[0]}..{span[1]} were skipped by the loss '
                'scaler (fp16 overflow); the weights did not move.'
            )
            return
        lrs = sorted({float(pg['lr']) for pg in runner.optim_wrapper.param_groups})
        where = (
            'after the first optimizer step'
            if first
            else f'over iterations {span[0]}..{span[1]} (window of {self._window})'
        )
        cause = (
            'optimizer.step() was not called in these iterations (a train_step that skips it?)'
            if steps == 0
            else f'{steps} optimizer step(s) ran; causes: no gradient reached them, a learning '
            'rate of 0 (warm-up start_factor=0, a schedule ending at 0), or the parameters '
            'are not in the optimizer (it was built before requires_grad was set)'
        )
        raise RuntimeError(
            f'GradientFlowGuardHook: {where} these trainable groups did not change: '
            f'{name_units(unchanged, list(self._units))}.\n  Their update norm is 0.\n'
            f'  learning rates at this step: {lrs}\n  {cause}.'
        )


def _mean(value: Any) -> float:
    """A loss part as one number (a tensor on the synchronous path, a float when read late)."""
    return float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)


def _sync_cuda() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


@HOOKS.register_module()
class TrainableCheckpointHook(Hook):
    """Plain runner: keep only trainable parameters in checkpoints, and resume from them.

    ``Runner.save_checkpoint`` puts the whole ``model.state_dict()`` into the checkpoint; this
    drops every frozen parameter before it is written (buffers are kept, as DeepSpeed's
    ``exclude_frozen_parameters`` does). On load it checks that every trainable parameter is in
    the file and fills the frozen ones from the model itself: they come from the pretrained
    weights the model was built from, so the load stays complete and quiet.
    Under DeepSpeed the strategy does this itself (``exclude_frozen_parameters=True``).
    """

    priority = 'VERY_LOW'  # filter after every other hook has added to the checkpoint

    def before_save_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict')
        if state_dict is None:  # DeepSpeed: the engine writes the weights itself
            return
        checkpoint['state_dict'] = trainable_only_state(unwrap_model(runner.model), state_dict)
        checkpoint.setdefault('meta', {})['trainable_only'] = True

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict')
        if state_dict is None or not checkpoint.get('meta', {}).get('trainable_only'):
            return
        fill_frozen_from_model(unwrap_model(runner.model), state_dict, 'resume checkpoint')

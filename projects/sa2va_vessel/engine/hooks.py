"""Runner hooks: the gradient-flow guard and trainable-only checkpoints.

How the guard sees gradients in both runners
--------------------------------------------
Both ``OptimWrapper``/``AmpOptimWrapper`` (plain runner) and ``DeepSpeedOptimWrapper``
(FlexibleRunner) implement ``update_params(loss)`` as ``self.backward(loss)`` then ``self.step()``
(the plain wrappers then ``zero_grad()``, DeepSpeed frees the reduced gradients in ``step``).
So ``after_train_iter`` is too late to read gradients in either runner. The guard instead
replaces ``backward`` and ``step`` on the optimizer-wrapper *instance* at ``before_train``:

* right after the original ``backward`` (and only at a gradient-accumulation boundary, i.e. just
  before a real optimizer step) it reads every group's gradient: ``param.grad`` in the plain
  runner (already all-reduced by DDP; divided by the AMP loss scale), and
  ``deepspeed.utils.safe_get_full_grad`` under DeepSpeed, which reassembles ZeRO-2's partitioned
  gradient (a collective, so every rank runs it for the same parameters in the same order);
* around the first real ``step`` it snapshots the trainable weights (DeepSpeed: the fp32 master
  copy via ``safe_get_full_fp32_param``, since a tiny warm-up step may not move bf16 weights)
  and compares them afterwards.

On the first check it raises ``RuntimeError`` naming the groups that got nothing. Every
``interval`` iterations it writes ``train/grad_norm/<group>`` to the message hub; the
LoggerHook forwards those to TensorBoard as ``grad_norm/<group>``.
"""
from __future__ import annotations

import functools
import math
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from mmengine.hooks import Hook, LoggerHook
from mmengine.registry import HOOKS
from torch import nn

from .utils import deepspeed_engine_of, unwrap_model

Groups = dict[str, list[tuple[str, nn.Parameter]]]

_LIKELY_CAUSES = (
    'Likely causes: the path from these parameters to the loss runs under torch.no_grad() / '
    'torch.inference_mode() or through generate(); an output on that path is .detach()-ed or '
    'leaves autograd (.item(), .numpy(), re-created tensors); or the loss was rebuilt with '
    '.detach().requires_grad_(True), which lets backward() run while no parameter receives a '
    'gradient.')


def _trainable_groups(model: nn.Module) -> Groups:
    if not hasattr(model, 'trainable_groups'):
        raise TypeError(f'{type(model).__name__} has no trainable_groups(); the model contract '
                        '(docs/ARCHITECTURE.md) requires it for the gradient guard.')
    groups = model.trainable_groups()
    groups = {g: [(n, p) for n, p in params if p.requires_grad] for g, params in groups.items()}
    groups = {g: params for g, params in groups.items() if params}
    if not groups:
        raise RuntimeError('model.trainable_groups() returned no trainable parameter: nothing '
                           'would be trained. Check the config switches that unfreeze parts.')
    return groups


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


@HOOKS.register_module()
class GradientFlowGuardHook(Hook):
    """Stop the run when a trainable group gets no gradient or does not move; log grad norms.

    Args:
        interval: log ``grad_norm/<group>`` every this many iterations. ``None`` uses the
            LoggerHook's interval, so every logged line has a fresh value.
        check: run the first-step checks (switch off only to debug a known-broken model).
        log_parameter_table: log ``model.parameter_table()`` before training.
    """

    priority = 'VERY_HIGH'  # patch the optimizer wrapper before any other hook uses it

    def __init__(self, interval: Optional[int] = None, check: bool = True,
                 log_parameter_table: bool = True) -> None:
        if interval is not None and interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval
        self.check = check
        self.log_parameter_table = log_parameter_table
        self._grad_checked = not check
        self._step_checked = not check
        self._graph_checked = not check
        self._originals: dict[str, Callable] = {}

    # -- hook points --------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        model = unwrap_model(runner.model)
        self._runner = runner
        self._groups = _trainable_groups(model)
        self._engine = deepspeed_engine_of(runner.model)
        if self.interval is None:
            loggers = [h for h in runner.hooks if isinstance(h, LoggerHook)]
            self.interval = loggers[0].interval if loggers else 10
        if self.log_parameter_table and hasattr(model, 'parameter_table'):
            runner.logger.info('Parameter table:\n' + model.parameter_table())
        summary = ', '.join(f'{g} ({sum(p.numel() for _, p in ps)} params)'
                            for g, ps in self._groups.items())
        runner.logger.info(f'Trainable groups: {summary}')
        self._patch(runner.optim_wrapper)

    def after_train(self, runner: Any) -> None:
        self._unpatch(runner.optim_wrapper)

    # -- patching -----------------------------------------------------------------------------
    def _patch(self, optim_wrapper: Any) -> None:
        if not (hasattr(optim_wrapper, 'backward') and hasattr(optim_wrapper, 'step')):
            raise TypeError(f'GradientFlowGuardHook needs an optimizer wrapper with backward() '
                            f'and step(); got {type(optim_wrapper).__name__} (an '
                            'OptimWrapperDict is not supported).')
        # Remember instance-level attributes (mmengine's param schedulers wrap `step` with a
        # counter on the instance) so after_train restores exactly what was there.
        self._originals = {name: optim_wrapper.__dict__.get(name) for name in ('backward', 'step')}
        orig_backward, orig_step = optim_wrapper.backward, optim_wrapper.step

        @functools.wraps(orig_backward)
        def backward(loss: torch.Tensor, **kwargs: Any) -> None:
            if not self._graph_checked:
                self._graph_checked = True
                self._check_graph(loss)
            orig_backward(loss, **kwargs)
            self._after_backward(optim_wrapper)

        @functools.wraps(orig_step)  # keeps `_with_counter`, which the schedulers check
        def step(**kwargs: Any) -> Any:
            if self._step_checked or not self._is_update_boundary(optim_wrapper):
                return orig_step(**kwargs)
            return self._checked_step(optim_wrapper, orig_step, **kwargs)

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

    # -- autograd graph (before the first backward) --------------------------------------------
    def _check_graph(self, loss: torch.Tensor) -> None:
        """Fail before backward when the loss has no autograd path to a whole group.

        Needed because a dead group does not always reach the gradient check: DeepSpeed ZeRO-2
        crashes inside ``engine.backward`` (IndexError in ``reduce_ipg_grads``) when no
        parameter got a gradient. Walking ``loss.grad_fn`` costs no compute. Reentrant
        activation checkpointing hides the parameters inside the checkpointed blocks from the
        outer graph, so then this check stands aside and the gradient check decides.
        """
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            raise RuntimeError('GradientFlowGuardHook: the training loss does not require '
                               'grad, so no trainable group can learn. ' + _LIKELY_CAUSES)
        reachable, hidden = reachable_parameters(loss)
        if hidden:
            return
        dead = [g for g, params in self._groups.items()
                if not any(id(p) in reachable for _, p in params)]
        if not dead:
            return
        alive = [g for g in self._groups if g not in dead]
        raise RuntimeError(
            'GradientFlowGuardHook: before the first backward, the loss has no autograd path '
            f'to these trainable groups: {", ".join(dead)}. They would get no gradient.\n'
            f'  groups that are connected: {", ".join(alive) or "none"}\n  ' + _LIKELY_CAUSES)

    # -- gradients ----------------------------------------------------------------------------
    def _is_update_boundary(self, optim_wrapper: Any) -> bool:
        if self._engine is not None:
            return bool(self._engine.is_gradient_accumulation_boundary())
        return bool(optim_wrapper.should_update())

    def _grad_of(self, param: nn.Parameter) -> Optional[torch.Tensor]:
        if self._engine is not None:
            from deepspeed.utils import safe_get_full_grad
            return safe_get_full_grad(param)
        return param.grad

    def _loss_scale(self, optim_wrapper: Any) -> float:
        # AmpOptimWrapper's backward multiplies the loss by the GradScaler's scale.
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        if scaler is not None and hasattr(scaler, 'get_scale') and scaler.is_enabled():
            return float(scaler.get_scale())
        return 1.0

    def group_grad_norms(self, optim_wrapper: Any) -> dict[str, Optional[float]]:
        """L2 norm of each group's gradient; ``None`` when no parameter of it has a gradient."""
        scale = self._loss_scale(optim_wrapper)
        norms: dict[str, Optional[float]] = OrderedDict()
        for group, params in self._groups.items():
            total, seen = 0.0, False
            for _, param in params:
                grad = self._grad_of(param)
                if grad is None:
                    continue
                seen = True
                total += float(grad.detach().float().norm()) ** 2
            norms[group] = math.sqrt(total) / scale if seen else None
        return norms

    def _after_backward(self, optim_wrapper: Any) -> None:
        if not self._is_update_boundary(optim_wrapper):
            return
        runner = self._runner
        need_check = not self._grad_checked
        need_log = (runner.iter + 1) % self.interval == 0
        if not (need_check or need_log):
            return
        norms = self.group_grad_norms(optim_wrapper)
        if need_check:
            self._grad_checked = True
            self._raise_on_bad_grads(norms)
        if need_log:
            for group, norm in norms.items():
                runner.message_hub.update_scalar(f'train/grad_norm/{group}',
                                                 0.0 if norm is None else norm)

    def _raise_on_bad_grads(self, norms: dict[str, Optional[float]]) -> None:
        missing = [g for g, n in norms.items() if n is None]
        zero = [g for g, n in norms.items() if n is not None and n == 0.0]
        bad = [g for g, n in norms.items() if n is not None and not math.isfinite(n)]
        if not (missing or zero or bad):
            self._runner.logger.info('GradientFlowGuardHook: every trainable group got a '
                                     'gradient: ' + ', '.join(f'{g}={n:.3e}'
                                                              for g, n in norms.items()))
            return
        ok = [f'{g} (|grad|={n:.3e})' for g, n in norms.items()
              if n is not None and n != 0.0 and math.isfinite(n)]
        lines = ['GradientFlowGuardHook: after the first backward, trainable groups got no '
                 'usable gradient.']
        if missing:
            lines.append(f'  no gradient at all (.grad is None): {", ".join(missing)}')
        if zero:
            lines.append(f'  gradient exactly zero: {", ".join(zero)}')
        if bad:
            lines.append(f'  non-finite gradient (inf/nan): {", ".join(bad)} -- check the '
                         'loss for log(0)/division by zero and the mixed-precision setting')
        lines.append(f'  groups that did get a gradient: {", ".join(ok) or "none"}')
        if missing or zero:
            lines.append('  ' + _LIKELY_CAUSES)
        raise RuntimeError('\n'.join(lines))

    # -- weights ------------------------------------------------------------------------------
    def _snapshot(self) -> dict[str, list[torch.Tensor]]:
        if self._engine is not None:
            from deepspeed.utils import safe_get_full_fp32_param

            def read(p: nn.Parameter) -> torch.Tensor:
                full = safe_get_full_fp32_param(p)
                return (p if full is None else full).detach().to('cpu', torch.float32, copy=True)
        else:
            # on the host: two full fp32 copies of 8B's 368 M trainables would be 2.7 GiB of GPU
            def read(p: nn.Parameter) -> torch.Tensor:
                return p.detach().to('cpu', torch.float32, copy=True)
        return {g: [read(p) for _, p in params] for g, params in self._groups.items()}

    def _step_skipped(self, optim_wrapper: Any, before: tuple) -> bool:
        # A dynamic loss scaler skips steps on overflow (fp16); that is not a dead group.
        return self._skip_state(optim_wrapper) != before

    def _skip_state(self, optim_wrapper: Any) -> tuple:
        if self._engine is not None:
            return (getattr(self._engine, 'skipped_steps', 0),)
        scaler = getattr(optim_wrapper, 'loss_scaler', None)
        if scaler is not None and hasattr(scaler, 'get_scale') and scaler.is_enabled():
            return (float(scaler.get_scale()),)
        return ()

    def _checked_step(self, optim_wrapper: Any, orig_step: Callable, **kwargs: Any) -> Any:
        before = self._snapshot()
        skip_state = self._skip_state(optim_wrapper)
        out = orig_step(**kwargs)
        if self._step_skipped(optim_wrapper, skip_state):
            self._runner.logger.warning('GradientFlowGuardHook: the first optimizer step was '
                                        'skipped (loss-scale overflow); checking the next one.')
            return out
        after = self._snapshot()
        self._step_checked = True
        unchanged = [g for g in self._groups
                     if all(torch.equal(b, a) for b, a in zip(before[g], after[g]))]
        if unchanged:
            lrs = sorted({float(pg['lr']) for pg in optim_wrapper.param_groups})
            raise RuntimeError(
                'GradientFlowGuardHook: after the first optimizer step these trainable groups '
                f'did not change: {", ".join(unchanged)}.\n'
                f'  learning rates at this step: {lrs}\n'
                '  Causes: no gradient reached them (see above; ' + _LIKELY_CAUSES + '), a '
                'learning rate of 0 at step 1 (warm-up start_factor=0), or the parameters are '
                'not in the optimizer (it was built before requires_grad was set).')
        self._runner.logger.info('GradientFlowGuardHook: every trainable group changed after '
                                 'the first optimizer step.')
        return out


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
        model = unwrap_model(runner.model)
        frozen = {n for n, p in model.named_parameters(remove_duplicate=False)
                  if not p.requires_grad}
        checkpoint['state_dict'] = OrderedDict(
            (k, v) for k, v in state_dict.items() if k not in frozen)
        checkpoint.setdefault('meta', {})['trainable_only'] = True

    def after_load_checkpoint(self, runner: Any, checkpoint: dict) -> None:
        state_dict = checkpoint.get('state_dict')
        if state_dict is None or not checkpoint.get('meta', {}).get('trainable_only'):
            return
        model = unwrap_model(runner.model)
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        missing = [n for n in trainable if n not in state_dict]
        if missing:
            raise RuntimeError(
                f'Checkpoint lacks {len(missing)} trainable parameter(s) of this model, e.g. '
                f'{missing[:5]}. It was saved with a different set of trainable groups '
                '(LoRA targets, unfrozen modules) than this config switches on.')
        for name, tensor in model.state_dict().items():
            state_dict.setdefault(name, tensor)

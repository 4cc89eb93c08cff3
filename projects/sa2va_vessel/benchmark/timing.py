"""Stage timing of a training step with CUDA events (host clock on CPU).

Events are recorded on the stream current at the mark, so a stage that runs on a side stream is
timed on that stream. Backward is split by two gradient hooks: one on the LLM's output (its
backward starts when that gradient is complete) and one on its input embeddings (its backward has
ended). Nothing here synchronizes during the timed steps.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections import defaultdict

import torch

STAGES = ('vision', 'llm_fwd', 'sam2_encoder', 'decoder', 'loss')
STEP_MARKS = ('step_start', 'bwd_start', 'llm_bwd_start', 'llm_bwd_end', 'bwd_end', 'opt_end')


class StageTimer:
    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.active = False
        self.stages: dict[str, list] = defaultdict(list)
        self.steps: list[dict] = []
        self._patched: list[tuple[object, str, object, bool]] = []

    # -- marks ---------------------------------------------------------------------------------
    def now(self) -> 'torch.cuda.Event | float':
        """A mark of this moment: a recorded CUDA event on the GPU, ``perf_counter()`` on the CPU."""
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def elapsed_ms(self, start, end) -> float:
        """Milliseconds between two marks of :meth:`now` (on the GPU: both events must have completed)."""
        return start.elapsed_time(end) if self.cuda else (end - start) * 1e3

    def mark(self, name: str) -> None:
        if not self.active:
            return
        if name == 'step_start':
            self.steps.append({})
        self.steps[-1][name] = self.now()

    @contextlib.contextmanager
    def stage(self, name: str):
        if not self.active:
            yield
            return
        start = self.now()
        try:
            yield
        finally:
            self.stages[name].append((start, self.now()))

    def llm_backward_hooks(self, inputs_embeds: torch.Tensor, hidden: torch.Tensor) -> None:
        if not (self.active and torch.is_grad_enabled()):
            return
        if hidden.requires_grad:
            hidden.register_hook(lambda grad: self.mark('llm_bwd_start'))
        if inputs_embeds.requires_grad:
            inputs_embeds.register_hook(lambda grad: self.mark('llm_bwd_end'))

    # -- patching the model's stage methods --------------------------------------------------------
    def wrap(self, obj: object, attr: str, stage: str, llm: bool = False) -> None:
        original = getattr(obj, attr)
        own = attr in vars(obj)

        @functools.wraps(original)
        def timed(*args, **kwargs):
            with self.stage(stage):
                out = original(*args, **kwargs)
            if llm:
                self.llm_backward_hooks(args[0] if args else kwargs['inputs_embeds'], out)
            return out

        setattr(obj, attr, timed)
        self._patched.append((obj, attr, original, own))

    def unwrap(self) -> None:
        for obj, attr, original, own in reversed(self._patched):
            if own:
                setattr(obj, attr, original)
            else:
                delattr(obj, attr)
        self._patched.clear()

    # -- results ---------------------------------------------------------------------------------
    def reset(self) -> None:
        self.stages.clear()
        self.steps.clear()

    def summary(self) -> dict[str, float]:
        """Mean milliseconds per step of each stage (after a synchronize)."""
        if self.cuda:
            torch.cuda.synchronize()
        n = max(len(self.steps), 1)
        out = {
            f'{k}_fwd' if k in ('vision', 'sam2_encoder', 'decoder', 'loss') else k: sum(
                self.elapsed_ms(a, b) for a, b in v
            )
            / n
            for k, v in self.stages.items()
        }
        parts = defaultdict(float)
        for step in self.steps:

            def span(a, b):
                return self.elapsed_ms(step[a], step[b]) if a in step and b in step else 0.0

            parts['forward'] += span('step_start', 'bwd_start')
            if 'llm_bwd_start' in step and 'llm_bwd_end' in step:
                parts['bwd_before_llm'] += span('bwd_start', 'llm_bwd_start')
                parts['llm_bwd'] += span('llm_bwd_start', 'llm_bwd_end')
                parts['bwd_after_llm'] += span('llm_bwd_end', 'bwd_end')
            parts['backward'] += span('bwd_start', 'bwd_end')
            parts['optimizer'] += span('bwd_end', 'opt_end')
        out.update({k: v / n for k, v in parts.items()})
        return {k: round(v, 3) for k, v in out.items()}

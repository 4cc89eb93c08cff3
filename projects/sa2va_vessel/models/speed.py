"""The model's speed switches, in one place: the constructor and the benchmark both use these.

Each switch changes how fast the training step runs, never what it computes, except where its
comment says so (compiled kernels fuse bf16 operations, so they round differently; measured in
docs/PERFORMANCE.md). ``Sa2VAVesselModel.set_speed_switches`` applies a ``SpeedSwitches`` and can
undo any of them, so a benchmark can walk the switches one at a time on one model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

# Compiled layers see one graph per distinct input shape. The collate pads sequence lengths to
# buckets (``pad_to_multiple_of``), so a run sees a handful of shapes; past this many graphs per
# layer dynamo falls back to eager for new shapes instead of compiling without bound.
COMPILE_CACHE_LIMIT = 16


@dataclass(frozen=True)
class SpeedSwitches:
    """What ``Sa2VAVesselModel(...)`` takes as the same-named constructor arguments."""

    gradient_checkpointing: bool = True  # recompute LLM activations in backward: memory for ~30% time
    sam2_side_stream: bool = False  # frozen SAM2 encoder on its own CUDA stream, beside ViT + LLM
    # Compiled modules run in training mode only: evaluation (batch 1, generation's growing KV
    # cache) would compile a new graph per shape, minutes before the first validation ends.
    compile_llm_layers: bool = False  # torch.compile each decoder layer (bf16 rounding differs)
    compile_frozen_encoders: bool = False  # torch.compile the no-grad ViT and SAM2 image encoder
    # The compiled decoder layers replay CUDA graphs (inductor's CUDA-graph trees, what
    # torch.compile's 'reduce-overhead' turns on): one replay per layer and pass in place of the
    # ~60 kernels Python launches one by one, for a step bound by the host (b8: each LoRA layer's
    # forward spends 1.6 ms of host on 0.8 ms of kernels, call 51). The same kernels (exact); one
    # graph per layer and sequence-length bucket. Applies to compiled layers on a CUDA device only
    # (with compile_llm_layers off there is no graph to replay, and inductor skips it on the CPU).
    cuda_graph_llm_layers: bool = False
    light_token_rows: bool = False  # token rows without peft's (vocab x hidden) merged copy (exact)
    # right-padded batches reach the InternVL LLM without a padding mask: causal attention hides
    # the pads from every real token (exact at real positions; SDPA's causal kernel, no host read)
    causal_mask_for_right_padding: bool = False
    # the image splice at the collate's host-known positions (index_copy): its backward reads no
    # count from the device, the training step's last such read (exact; call 51 saw no gain: one
    # run at 40.2 samples/s, inside the 39.9-50.3 spread of the same command without it)
    indexed_image_splice: bool = False
    sam2_feature_cache_size: int = 0  # frozen SAM2 features of unaugmented images reused
    vision_feature_cache: bool = False  # the ViT features too, same keys and capacity

    def replace(self, **changes) -> 'SpeedSwitches':
        return dataclasses.replace(self, **changes)

    def llm_layer_compile_options(self) -> dict[str, object]:
        """inductor options of the compiled decoder layers (``torch.compile(options=...)``)."""
        return {'triton.cudagraphs': True} if self.cuda_graph_llm_layers else {}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))


def bound_recompiles() -> None:
    """Cap dynamo's graphs per compiled frame (see COMPILE_CACHE_LIMIT)."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, COMPILE_CACHE_LIMIT)


def set_compiled(module: torch.nn.Module, compiled: bool, options: Optional[dict[str, object]] = None) -> None:
    """Compile ``module`` in place with inductor ``options``, or return it to eager
    (``nn.Module.compile`` has no undo).

    The compiled callable of each set of options is kept on the module, so switching back on reuses
    its graphs instead of compiling again (the model runs eager in eval mode and compiled in
    training mode), and a benchmark can walk options one at a time.
    """
    if not compiled:
        module._compiled_call_impl = None
        return
    key = tuple(sorted((options or {}).items()))
    stored = module.__dict__.setdefault('_sa2va_compiled_calls', {})
    if key not in stored:
        bound_recompiles()
        if key:
            module.compile(options=dict(key))
        else:
            module.compile()
        stored[key] = module._compiled_call_impl
    module._compiled_call_impl = stored[key]


def is_compiled(module: torch.nn.Module) -> bool:
    """Whether ``module``'s calls go through its compiled graph now."""
    return getattr(module, '_compiled_call_impl', None) is not None

"""Random weights drawn on the device part by part: the LLM one decoder layer at a time.

For presets too large to draw on the CPU (an 8B bf16 preset takes minutes there) and too large to
hold in bf16 on the target GPU (the 14B LLM is 29 GiB; QLoRA runs it on 24 GB cards):

1. ``parameters_on_meta``: the modules are built with their parameters on the meta device (no
   memory, no time). Only parameters whose constructor calls ``torch.empty`` go there, i.e. those an
   init function would fill; those a constructor fills itself (``torch.zeros``/``torch.ones``) and
   every buffer (rotary ``inv_freq``, SAM2's random positional matrix) are real CPU tensors, as in a
   normal build.
2. ``materialise_by_parts``: first everything but the decoder layers, then each layer in turn,
   is given storage on the device (filled with NaN, so that anything no init reaches shows up),
   initialised there by the transformers model's own init, and handed to ``after_layer`` (e.g.
   quantize its projections) before the next layer is drawn.
3. ``check_initialised``: no parameter is left on meta or non-finite; an error names them.

The init is each transformers model's own ``initialize_weights()`` (the innermost model's
``_init_weights`` for each module, as a normal build applies it); the other modules are marked
done with transformers' ``_is_hf_initialized`` flag, the way ``from_pretrained`` marks the loaded
ones so that only the missing ones are drawn. Modules outside any transformers model (``mlp1``,
``text_hidden_fcs``) get PyTorch's default init (``reset_parameters``), as at construction. One
difference from a normal build: the Qwen-VL vision towers' constructors never apply transformers'
init (no ``post_init``), so a normal build leaves them at PyTorch's defaults; here they get it.
Seeded draws on one device are deterministic; they are not the numbers a normal build draws.
"""

from __future__ import annotations

import contextlib
import weakref
from typing import Callable, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from transformers import PreTrainedModel


class _EmptyOnMeta(TorchFunctionMode):
    """``torch.empty`` on the CPU (the default device) makes a meta tensor instead."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.empty and torch.device(kwargs.get('device') or 'cpu').type == 'cpu':
            kwargs['device'] = 'meta'
        return func(*args, **kwargs)


@contextlib.contextmanager
def parameters_on_meta() -> Iterator[None]:
    """Build modules inside: parameters made by ``torch.empty`` are on meta (see module docstring).

    A buffer made by ``torch.empty`` would be lost on meta; ``check_no_meta_buffers`` refuses it.
    """
    with _EmptyOnMeta():
        yield


def check_no_meta_buffers(root: nn.Module) -> None:
    meta = [name for name, b in root.named_buffers() if b.is_meta]
    if meta:
        raise RuntimeError(
            f'{len(meta)} buffers were built on meta and have no values: {meta[:10]}; '
            'this module cannot be drawn by parts (build it normally)'
        )


def _to_device(module: nn.Module, device: torch.device, made: dict[int, tuple]) -> None:
    """The module's own meta parameters get NaN storage on ``device``; real ones and buffers are copied.

    ``made`` maps each replaced meta parameter (kept alive there, so its id stays its own) to a weak
    reference to its replacement: a parameter in two places (tied embeddings) stays one, and a
    replacement nothing uses any more (a quantized layer's bf16 weight) is freed at once.
    """
    for name, param in list(module.named_parameters(recurse=False)):
        if param.is_meta:
            new = made[id(param)][1]() if id(param) in made else None
            if new is None:
                new = nn.Parameter(
                    torch.full(param.shape, float('nan'), dtype=param.dtype, device=device),
                    requires_grad=param.requires_grad,
                )
                made[id(param)] = (param, weakref.ref(new))
            setattr(module, name, new)
        elif param.device != device:
            param.data = param.data.to(device)  # the same parameter object: ties and references hold
    for name, buffer in list(module.named_buffers(recurse=False)):
        if buffer.device != device:
            setattr(module, name, buffer.to(device))  # keeps the buffer's persistence


def _outermost_pretrained(root: nn.Module) -> list[PreTrainedModel]:
    found: list[PreTrainedModel] = []

    def walk(module: nn.Module) -> None:
        for child in module.children():
            if isinstance(child, PreTrainedModel):
                found.append(child)
            else:
                walk(child)

    if isinstance(root, PreTrainedModel):
        return [root]
    walk(root)
    return found


def _outside_pretrained(root: nn.Module) -> list[nn.Module]:
    """Modules under ``root`` that no transformers model contains (PyTorch's default init applies)."""
    inside = {id(m) for model in _outermost_pretrained(root) for m in model.modules()}
    return [m for m in root.modules() if id(m) not in inside]


@torch.no_grad()
def _initialise(root: nn.Module, part: list[nn.Module]) -> None:
    """Draw the parameters of the modules in ``part`` (everything else is left as it is)."""
    in_part = {id(m) for m in part}
    for module in root.modules():
        module._is_hf_initialized = id(module) not in in_part
    for model in _outermost_pretrained(root):
        model.initialize_weights()
    for module in _outside_pretrained(root):
        if id(module) in in_part and hasattr(module, 'reset_parameters'):
            module.reset_parameters()
    for module in root.modules():
        module._is_hf_initialized = True  # as after a normal build


def materialise_by_parts(
    root: nn.Module,
    layers: nn.ModuleList,
    device: str | torch.device,
    after_layer: Callable[[nn.Module], object] | None = None,
) -> None:
    """Give ``root``'s meta parameters storage on ``device`` and draw them, one part at a time.

    Parts: everything outside ``layers``, then each of ``layers`` in order; ``after_layer(layer)``
    runs on each layer as soon as it is drawn, before the next one is allocated.
    """
    device = torch.device(device)
    check_no_meta_buffers(root)
    made: dict[int, tuple] = {}

    def draw(part: list[nn.Module]) -> None:
        for module in part:
            _to_device(module, device, made)
        _initialise(root, part)

    in_layers = {id(m) for layer in layers for m in layer.modules()}
    draw([m for m in root.modules() if id(m) not in in_layers])
    for layer in layers:
        draw(list(layer.modules()))
        if after_layer is not None:
            after_layer(layer)


def check_initialised(root: nn.Module, what: str) -> None:
    """Every floating parameter of ``root`` has storage and finite values, or an error names them."""
    meta, bad = [], []
    for name, param in root.named_parameters():
        if param.is_meta:
            meta.append(name)
        # one reduction per tensor: NaN or inf anywhere makes the float32 sum non-finite
        elif param.is_floating_point() and not bool(torch.isfinite(param.detach().sum(dtype=torch.float32))):
            bad.append(name)
    if meta or bad:
        raise RuntimeError(
            f'{what}: {len(meta)} parameters never got storage {meta[:10]}, {len(bad)} hold '
            f'NaN/inf (no init reached them) {bad[:10]}'
        )

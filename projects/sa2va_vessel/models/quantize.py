"""A 4-bit frozen LLM base (QLoRA): the decoder layers' projections as bitsandbytes ``Linear4bit``.

Only the frozen ``nn.Linear`` projections of the decoder layers (q/k/v/o/gate/up/down) are
quantized; ``embed_tokens``, ``lm_head``, the norms, the ViT, the projector and SAM2 keep their
dtype. It runs before LoRA is injected: peft then wraps each ``Linear4bit`` in its 4-bit LoRA layer
(``peft.tuners.lora.bnb.Linear4bit``), which computes ``dequant(W4) x + scale * B A x``.

When the weights are quantized:

* weights already on an accelerator are quantized here, one layer at a time, each layer's bf16
  copies freed once its 4-bit copies exist. A QLoRA preset goes further: it is drawn on the device
  one decoder layer at a time, each layer quantized (``quantize_layer_linears``) before the next is
  drawn (``checkpoint.build_preset``), so the whole bf16 LLM never sits on the GPU;
* weights on the CPU while a GPU is present (a checkpoint loaded on the CPU for the runner to
  move) stay in their dtype inside ``Params4bit`` and are quantized on the move to the GPU
  (``Params4bit.to``), again one tensor at a time. Quantizing on the CPU is slow at real sizes
  (about 10 s per 8B MLP matrix, some 15 min for an 8B LLM);
* without any GPU (CPU runs, CI) they are quantized here on the CPU.

bitsandbytes is an optional dependency (the ``qlora`` extra); importing this module does not need it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .lora import DEFAULT_TARGETS

QUANT_TYPES = ('nf4', 'fp4')
INSTALL_HINT = "pip install 'bitsandbytes>=0.50,<0.51' (or the project's extra: pip install -e '.[qlora]')"


def import_bitsandbytes():
    """The ``bitsandbytes`` module, or an ImportError that says how to install it."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise ImportError(
            f'quantize_base (a 4-bit frozen LLM base, QLoRA) needs bitsandbytes, which cannot be '
            f'imported ({err}); install it: {INSTALL_HINT}'
        ) from err
    return bitsandbytes


def check_quant_type(quant_type: str) -> None:
    if quant_type not in QUANT_TYPES:
        raise ValueError(f'quantize_base must be one of {QUANT_TYPES} or None, got {quant_type!r}')


def _quantize_here(device: torch.device, quantize_now: bool | None) -> bool:
    if quantize_now is not None:
        return quantize_now
    return device.type != 'cpu' or not torch.cuda.is_available()


def quantize_llm_linears(
    language_model: nn.Module,
    quant_type: str = 'nf4',
    compute_dtype: torch.dtype = torch.bfloat16,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    quantize_now: bool | None = None,
) -> int:
    """Replace the decoder layers' ``nn.Linear`` ``target_modules`` by 4-bit ``Linear4bit`` in place.

    ``language_model`` is a transformers causal LM (``.model.layers``); it must not carry LoRA yet.
    ``quantize_now`` None follows the module docstring; True/False forces quantizing here / on the
    next move to a device. Returns the number of layers replaced.
    """
    import_bitsandbytes()
    check_quant_type(quant_type)
    from tqdm.auto import tqdm

    replaced, on_accelerator = 0, False
    layers = language_model.model.layers
    for layer in tqdm(layers, desc=f'quantizing LLM projections to {quant_type}', leave=False, disable=len(layers) < 8):
        on_accelerator |= any(p.device.type != 'cpu' for p in layer.parameters())
        replaced += quantize_layer_linears(layer, quant_type, compute_dtype, target_modules, quantize_now)
    mark_loaded_in_4bit(language_model)
    if on_accelerator and torch.cuda.is_available():
        torch.cuda.empty_cache()  # give the freed bf16 blocks back
    return replaced


def quantize_layer_linears(
    layer: nn.Module,
    quant_type: str = 'nf4',
    compute_dtype: torch.dtype = torch.bfloat16,
    target_modules: tuple[str, ...] = DEFAULT_TARGETS,
    quantize_now: bool | None = None,
) -> int:
    """``quantize_llm_linears`` for one decoder layer (a layer-by-layer build calls it as each layer is drawn).

    Call ``mark_loaded_in_4bit`` on the language model once all its layers are done.
    """
    bnb = import_bitsandbytes()
    check_quant_type(quant_type)
    targets = [(name, module) for name, module in layer.named_modules() if name.rpartition('.')[2] in target_modules]
    for name, module in targets:
        if type(module) is not nn.Linear:
            raise TypeError(
                f'{name} of an LLM decoder layer is a {type(module).__name__}, not a plain '
                'nn.Linear; quantize the base before LoRA is injected, and only once'
            )
        parent_name, _, leaf = name.rpartition('.')
        setattr(
            layer.get_submodule(parent_name), leaf, _to_linear4bit(bnb, module, quant_type, compute_dtype, quantize_now)
        )
        del module  # the old nn.Linear (and, once quantized, its bf16 weight) is unreferenced now
    return len(targets)


def mark_loaded_in_4bit(language_model: nn.Module) -> None:
    """peft's LoRA dispatch picks its 4-bit layer only for models flagged as loaded in 4 bit."""
    language_model.is_loaded_in_4bit = True


def _to_linear4bit(
    bnb, linear: nn.Linear, quant_type: str, compute_dtype: torch.dtype, quantize_now: bool | None
) -> nn.Module:
    # built on meta: no throw-away weight of the full size is allocated and initialised
    new = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=compute_dtype,
        compress_statistics=True,
        quant_type=quant_type,
        device='meta',
    )
    weight = linear.weight
    new.weight = bnb.nn.Params4bit(
        weight.data, requires_grad=False, compress_statistics=True, quant_type=quant_type, module=new
    )
    if linear.bias is not None:
        new.bias = linear.bias  # stays in its dtype, frozen
    new.train(linear.training)
    # bitsandbytes (0.50) repacks a 4-bit weight for its AVX512-BF16 kernel at the first CPU
    # forward in eval mode, and unpacks it to save: the round trip changes the statistics
    # (nested_offset), so a checkpoint saved after a CPU validation no longer matches the base it
    # names. The frozen base stays as quantized: that kernel is for CPU inference, not this.
    if hasattr(new, 'support_avx512bf16_for_cpu'):
        new.support_avx512bf16_for_cpu = False
    new.register_load_state_dict_pre_hook(_take_statistics)
    if _quantize_here(weight.device, quantize_now):
        new.weight = new.weight.to(weight.device)  # Params4bit quantizes on its first move
    return new


def _take_statistics(
    module: nn.Module,
    state_dict: dict,
    prefix: str,
    local_metadata: dict,
    strict: bool,
    missing_keys: list,
    unexpected_keys: list,
    error_msgs: list,
) -> None:
    """Load hook: accept the quantization statistics a ``Linear4bit`` writes into its state dict.

    bnb saves them (``weight.absmax``, ``weight.quant_map``, ...) but has no loader for them, so a
    strict load of its own state dict fails. The frozen base is always rebuilt from ``model_path``;
    the checkpoint's statistics are checked against it instead of loaded, so a checkpoint trained
    on another base (or quantization) is an error, not silently mixed.
    """
    keys = [k for k in state_dict if k.startswith(prefix + 'weight.')]
    saved = {k[len(prefix + 'weight.') :]: state_dict.pop(k) for k in keys}
    if not saved or not is_quantized(module.weight):
        return  # nothing to compare yet: the weight is quantized on its move to the GPU
    ours = module.weight.quant_state.as_dict(packed=True)
    differ = sorted(
        k for k, v in saved.items() if k not in ours or not torch.equal(ours[k].cpu(), torch.as_tensor(v).cpu())
    )
    if differ:
        error_msgs.append(
            f"{prefix}weight: the checkpoint's 4-bit statistics {differ} differ from those of the "
            'base built from model_path (another base checkpoint or quant type?)'
        )


# ---- reading a quantized base --------------------------------------------------------------------
def is_linear4bit(module: nn.Module) -> bool:
    """True for a bitsandbytes ``Linear4bit`` (without importing bitsandbytes when it is absent)."""
    return any(c.__name__ == 'Linear4bit' and c.__module__.startswith('bitsandbytes') for c in type(module).__mro__)


def linear4bit_layers(module: nn.Module) -> dict[str, nn.Module]:
    """Every ``Linear4bit`` inside ``module`` by qualified name (peft's ``base_layer`` ones included)."""
    return {name: m for name, m in module.named_modules() if is_linear4bit(m)}


def is_quantized(param: torch.Tensor) -> bool:
    """A ``Params4bit`` whose data is already the packed 4-bit weight."""
    return bool(getattr(param, 'bnb_quantized', False)) and getattr(param, 'quant_state', None) is not None


def logical_numel(param: torch.Tensor) -> int:
    """Elements of the weight a parameter stands for (a packed 4-bit tensor holds two per byte)."""
    return int(math.prod(param.quant_state.shape)) if is_quantized(param) else param.numel()


def storage_bytes(module: nn.Module) -> int:
    """Bytes a ``Linear4bit``'s weight takes: packed codes plus its quantization statistics."""
    weight = module.weight
    total = weight.numel() * weight.element_size()
    if is_quantized(weight):
        state = weight.quant_state
        stats = [state.absmax, state.code] + ([state.state2.absmax, state.state2.code] if state.nested else [])
        total += sum(t.numel() * t.element_size() for t in stats)
    return total


def dequantized_weight(module: nn.Module) -> torch.Tensor:
    """The float32 weight a ``Linear4bit`` computes with, on the CPU.

    A weight still waiting for its move to the GPU is quantized first (on a GPU if there is one),
    so that the result is always the 4-bit weight the model trained against, never the original.
    """
    bnb = import_bitsandbytes()
    weight = module.weight
    if not is_quantized(weight):
        device = torch.device('cuda') if torch.cuda.is_available() else weight.device
        packed, state = bnb.functional.quantize_4bit(
            weight.data.to(device).contiguous(),
            blocksize=weight.blocksize,
            compress_statistics=weight.compress_statistics,
            quant_type=weight.quant_type,
            quant_storage=weight.quant_storage,
        )
    else:
        if getattr(weight.quant_state, 'packing_format_for_cpu', False):
            module.state_dict()  # bnb's CPU inference layout: saving a state dict restores the standard one
            weight = module.weight
        packed, state = weight.data, weight.quant_state
    return bnb.functional.dequantize_4bit(packed, state).float().cpu()

"""LoRA on the LLM through peft, and the new token rows through peft's trainable tokens.

The official recipe makes ``embed_tokens`` and ``lm_head`` fully trainable (about 1.1B extra
trainable parameters for an 8B model, plus their optimizer state). Only the rows of the tokens
Sa2VA added (``[SEG]``) need to learn, so they train through ``trainable_token_indices``: a small
delta table per wrapped matrix, merged back on export.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from torch import nn

from .peft_names import TOKEN_DELTA, is_lora

DEFAULT_TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


@dataclass
class LoraSettings:
    r: int = 128
    alpha: int = 256
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    token_ids: list[int] = field(default_factory=list)


def add_lora(language_model: nn.Module, settings: LoraSettings, lora: bool, token_rows: bool) -> None:
    """Inject LoRA layers and trainable token rows into the Qwen2 LLM in place.

    Everything of the LLM ends frozen except the adapters asked for.
    """
    for p in language_model.parameters():
        p.requires_grad_(False)
    if not lora and not token_rows:
        return
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        # a regex, so that only the decoder layers' projections match
        target_modules=r'.*layers\.\d+\.(self_attn|mlp)\.(' + '|'.join(settings.target_modules) + r')$' if lora else [],
        trainable_token_indices={'embed_tokens': list(settings.token_ids), 'lm_head': list(settings.token_ids)}
        if token_rows
        else None,
        bias='none',
    )
    inject_adapter_in_model(config, language_model)
    for name, p in language_model.named_parameters():
        p.requires_grad_((lora and is_lora(name)) or (token_rows and TOKEN_DELTA in name))


def _row_index(layer: nn.Module, adapter: str, device: torch.device) -> torch.Tensor:
    """The adapter's trainable row ids on ``device``, made once: a fresh host-to-device copy of
    pageable memory every forward would synchronise the GPU."""
    cache = layer.__dict__.setdefault('_sa2va_row_index', {})
    key = (adapter, device, tuple(layer.token_indices[adapter]))
    if key not in cache:
        cache.clear()
        cache[key] = torch.tensor(key[2], device=device)
    return cache[key]


def _rows_forward(self, x: torch.Tensor, active_adapters, *args, **kwargs) -> torch.Tensor:
    """peft's trainable-tokens forward without the full merged copy of the matrix.

    peft builds ``W = base.weight.index_copy(0, rows, deltas)`` every call: a (vocab x hidden)
    copy (1 GiB for an 8B model), which the lm_head keeps alive until backward. Here the frozen
    matrix is used as it is and only the trainable rows are replaced, in the output: the same
    values and the same gradient for the deltas.
    """
    base = self.base_layer
    if (
        self.disable_adapters
        or self.merged
        or len(active_adapters) != 1
        or not isinstance(base, (nn.Embedding, nn.Linear))
        or self._get_embed_scale() is not None
    ):
        return TrainableTokensLayer.forward_adapters(self, x, active_adapters, *args, **kwargs)
    adapter = active_adapters[0]
    index = _row_index(self, adapter, base.weight.device)
    deltas = self.trainable_tokens_delta[adapter].to(base.weight)
    if isinstance(base, nn.Embedding):
        out = F.embedding(x, base.weight, padding_idx=base.padding_idx)
        hit = (x.unsqueeze(-1) == index).to(out.dtype)  # (..., n_rows) one-hot of the trainable ids
        return torch.where(hit.sum(-1, keepdim=True) > 0, hit @ deltas, out)
    return F.linear(x, base.weight).index_copy(-1, index, F.linear(x, deltas))


def set_light_token_rows(language_model: nn.Module, light: bool = True) -> int:
    """Switch every trainable-token layer of ``language_model`` to ``_rows_forward`` (or back to
    peft's own forward); returns how many layers there are."""
    n = 0
    for module in language_model.modules():
        if isinstance(module, TrainableTokensLayer):
            if light:
                module.forward_adapters = types.MethodType(_rows_forward, module)
            else:
                vars(module).pop('forward_adapters', None)
            n += 1
    return n

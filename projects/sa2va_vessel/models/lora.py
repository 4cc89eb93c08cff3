"""LoRA on the LLM through peft, and the new token rows through peft's trainable tokens.

The official recipe makes ``embed_tokens`` and ``lm_head`` fully trainable (about 1.1B extra
trainable parameters for an 8B model, plus their optimizer state). Only the rows of the tokens
Sa2VA added (``[SEG]``) need to learn, so they train through ``trainable_token_indices``: a small
delta table per wrapped matrix, merged back on export.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig, inject_adapter_in_model
from torch import nn

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
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        # a regex, so that only the decoder layers' projections match
        target_modules=r'.*layers\.\d+\.(self_attn|mlp)\.(' + '|'.join(settings.target_modules) + r')$'
        if lora else [],
        trainable_token_indices={'embed_tokens': list(settings.token_ids), 'lm_head': list(settings.token_ids)}
        if token_rows else None,
        bias='none')
    inject_adapter_in_model(config, language_model)
    for name, p in language_model.named_parameters():
        is_lora = 'lora_' in name
        is_token = 'trainable_tokens_delta' in name
        p.requires_grad_((lora and is_lora) or (token_rows and is_token))

"""peft's parameter names, in one place.

peft wraps a LoRA target ``...q_proj`` into a ``LoraLayer`` whose frozen weight moves to
``...q_proj.base_layer.weight`` and whose adapter weights are ``...q_proj.lora_A.default.weight``
/ ``lora_B``; trainable token rows (``TrainableTokensLayer``) hold
``...embed_tokens.token_adapter.trainable_tokens_delta.default`` (``lm_head``: without
``token_adapter``). An adapter file written by peft (``get_peft_model_state_dict``) drops the
adapter name and prefixes ``base_model.model.``. Grouping the trainable parameters
(``Sa2VAVesselModel.trainable_groups``), switching them on (``models/lora.py``), the gradient
guard's LoRA kinds (``engine/guard_probe.py``), merging and the adapter export/loading
(``models/export.py``, ``models/training_checkpoint.py``) all read names through these functions.
"""

from __future__ import annotations

import re
from typing import Optional

#: The one adapter this project injects (peft's default name).
ADAPTER_NAME = 'default'
#: Prefix of every key in a peft adapter file (``PeftModel`` around the LLM).
PEFT_PREFIX = 'base_model.model.'
#: Where the LLM sits in ``Sa2VAVesselModel``'s parameter names.
LLM_PREFIX = 'sa2va.language_model.'
TOKEN_DELTA = 'trainable_tokens_delta'

_LORA_KIND = re.compile(r'\.([A-Za-z0-9_]+)\.lora_[AB]\b')


class PeftNameError(ValueError):
    """A key that is not a peft adapter key this project writes."""


def is_lora(name: str) -> bool:
    """A LoRA adapter tensor (``lora_A`` / ``lora_B`` and peft's other ``lora_*`` entries)."""
    return 'lora_' in name


def is_token_rows(name: str) -> bool:
    """A trainable token-rows tensor (the delta rows, or peft's saved original rows)."""
    return 'trainable_tokens_' in name


def is_adapter(name: str) -> bool:
    """Any tensor peft added (LoRA or token rows): not part of the base model's weights."""
    return is_lora(name) or is_token_rows(name)


def is_lora_b(name: str) -> bool:
    """A LoRA ``B`` matrix (zero at the start, so the first gradient reaches it, not ``A``)."""
    return 'lora_B' in name


def lora_kind(name: str) -> Optional[str]:
    """``...layers.3.mlp.down_proj.lora_B.default.weight`` -> ``down_proj``; None elsewhere."""
    match = _LORA_KIND.search(name)
    return match.group(1) if match else None


def base_name(name: str) -> str:
    """The name without peft's wrapper levels (``q_proj.base_layer.weight`` -> ``q_proj.weight``)."""
    return name.replace('.token_adapter.base_layer.', '.').replace('.base_layer.', '.')


def token_layer_owner(name: str) -> str:
    """The module a token-rows layer stands for (``embed_tokens.token_adapter`` -> ``embed_tokens``)."""
    return name[: -len('.token_adapter')] if name.endswith('.token_adapter') else name


def from_peft_key(key: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` -> our parameter name."""
    if not key.startswith(PEFT_PREFIX):
        raise PeftNameError(f'adapter key {key!r} lacks the peft prefix {PEFT_PREFIX!r}')
    rest = key[len(PEFT_PREFIX) :]
    for part in ('lora_A', 'lora_B'):
        marker = f'.{part}.weight'
        if rest.endswith(marker):
            return LLM_PREFIX + rest[: -len(marker)] + f'.{part}.{ADAPTER_NAME}.weight'
    if rest.endswith(f'.{TOKEN_DELTA}'):
        return LLM_PREFIX + rest + f'.{ADAPTER_NAME}'
    raise PeftNameError(f'adapter key {key!r}: not a LoRA A/B weight nor a trainable-token table')


def to_peft_key(key: str) -> str:
    """A key of ``get_peft_model_state_dict(llm)`` as peft writes it to an adapter file."""
    return PEFT_PREFIX + key

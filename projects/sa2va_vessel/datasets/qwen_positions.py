"""M-RoPE position ids of the Qwen-VL Sa2VA families, from transformers' own ``get_rope_index``.

The data side computes them per sample (``datasets/sample.py``) and the model for whole batches
(``models/sa2va_qwen.py``); both call this one function.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLModel
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

from .checkpoint_config import QWEN2_5_VL, QWEN3_VL

# family -> the transformers class holding get_rope_index
ROPE_INDEX_CLASSES = {QWEN2_5_VL: Qwen2_5_VLModel, QWEN3_VL: Qwen3VLModel}


def rope_index(
    mllm_config: Any,
    family: str,
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, B, L) position ids and rope deltas of ``get_rope_index`` of the family, for images (the
    method reads only ``self.config``, so it runs on a namespace holding the config)."""
    if family not in ROPE_INDEX_CLASSES:
        raise ValueError(f'M-RoPE position ids are defined for {sorted(ROPE_INDEX_CLASSES)}, not {family!r}')
    owner = SimpleNamespace(config=mllm_config)
    cls = ROPE_INDEX_CLASSES[family]
    if attention_mask is not None:
        attention_mask = attention_mask.to(input_ids.device).long()
    if family == QWEN2_5_VL:  # Qwen2.5-VL's signature has second_per_grid_ts
        return cls.get_rope_index(owner, input_ids, image_grid_thw, None, None, attention_mask)
    return cls.get_rope_index(owner, input_ids, image_grid_thw, None, attention_mask)

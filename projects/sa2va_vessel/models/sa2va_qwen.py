"""The Qwen-VL families of Sa2VA (Sa2VA-Qwen2.5-VL, Sa2VA-Qwen3-VL) from transformers-native parts.

``Sa2VAQwenModules`` holds the family's vision tower with its merger(s)
(``Qwen2_5_VisionTransformerPretrainedModel`` / ``Qwen3VLVisionModel``, as ``visual``), the text
model plus the untied ``lm_head`` (``QwenVLTextForCausalLM``, as ``language_model``), Sam2Model and
``text_hidden_fcs``. Stage methods, each what the official ``Sa2VAChatModelQwen`` computes
(``../shared/fixtures/golden_qwen25vl/README.md``, ``golden_qwen3vl/README.md``):

- ``image_embeddings``: patches (merge-block order, ``image_grid_thw``) -> merged image embeddings
  (+ the DeepStack embeddings of Qwen3-VL);
- ``splice_image_embeddings``: the embeddings scattered, in order, into the ``<|image_pad|>`` rows;
- ``rope_position_ids``: the M-RoPE (3, B, L) position ids of the model's own ``get_rope_index``;
- ``llm_last_hidden``: what official training reads as ``hidden_states[-1]``: AFTER the final norm
  for Qwen2.5-VL, BEFORE it for Qwen3-VL (transformers 4.57 records the last decoder layer output
  there), with the DeepStack embeddings added after the first decoder layers for Qwen3-VL.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from transformers import Cache
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import (
    Qwen2_5_VisionTransformerPretrainedModel,
    Qwen2_5_VLPreTrainedModel,
    Qwen2_5_VLTextModel,
)
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLPreTrainedModel, Qwen3VLTextModel, Qwen3VLVisionModel

from ..datasets.checkpoint_config import QWEN2_5_VL, QWEN3_VL
from ..datasets.qwen_positions import rope_index
from .configuration import Sa2VAArchitecture
from .sa2va import Sa2VABase


class _TextCausalLM:
    """The text model and an untied ``lm_head``: the language half of ``*ForConditionalGeneration``.

    Named ``model`` / ``lm_head`` like a transformers CausalLM, so that LoRA, the token rows and
    the export address it exactly as they address the InternVL family's Qwen2ForCausalLM.
    """

    text_model_class: type

    def __init__(self, config) -> None:
        super().__init__(config)
        self.model = self.text_model_class(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        use_cache: bool = False,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits over the vocabulary (lm_head on the final norm's output), as the language half of
        ``*ForConditionalGeneration.forward`` computes them: with ``labels``, transformers' causal-LM
        loss; with ``output_hidden_states``, the text model's hidden states (no KV cache here)."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            use_cache=False,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        logits = self.lm_head(out.last_hidden_state)
        loss = (
            None
            if labels is None
            else self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size)
        )
        return CausalLMOutputWithPast(loss=loss, logits=logits, hidden_states=out.hidden_states)


class Qwen2_5_VLTextForCausalLM(_TextCausalLM, Qwen2_5_VLPreTrainedModel):
    text_model_class = Qwen2_5_VLTextModel


class Qwen3VLTextForCausalLM(_TextCausalLM, Qwen3VLPreTrainedModel):
    text_model_class = Qwen3VLTextModel


# family -> (vision tower class, language model class); get_rope_index: datasets/qwen_positions.py
FAMILY_CLASSES = {
    QWEN2_5_VL: (Qwen2_5_VisionTransformerPretrainedModel, Qwen2_5_VLTextForCausalLM),
    QWEN3_VL: (Qwen3VLVisionModel, Qwen3VLTextForCausalLM),
}


@contextlib.contextmanager
def _norm_input(norm: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Capture the input of the final norm (Qwen3-VL's ``hidden_states[-1]``)."""
    captured: list[torch.Tensor] = []
    handle = norm.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


class Sa2VAQwenModules(Sa2VABase):
    """The Qwen2.5-VL / Qwen3-VL-family Sa2VA network (see module docstring)."""

    def __init__(self, arch: Sa2VAArchitecture, attn_implementation: str = 'sdpa') -> None:
        super().__init__()
        if arch.family not in FAMILY_CLASSES:
            raise ValueError(f'{arch.path}: family {arch.family!r} is not a Qwen-VL family')
        self.arch = arch
        self.family = arch.family
        vision_class, llm_class = FAMILY_CLASSES[arch.family]
        arch.vision._attn_implementation = attn_implementation
        arch.llm._attn_implementation = attn_implementation
        self.visual = vision_class(arch.vision)
        self.language_model = llm_class(arch.llm)
        self._build_grounding()

    @property
    def vision_tower(self) -> nn.Module:
        """The frozen vision encoder (what ``compile_frozen_encoders`` compiles)."""
        return self.visual

    @property
    def image_token_id(self) -> int:
        return int(self.arch.mllm.image_token_id)

    def projector_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """The merger(s): the counterpart of InternVL's ``mlp1`` (projector group)."""
        for name, p in self.visual.named_parameters():
            if name.startswith(('merger.', 'deepstack_merger_list.')):
                yield name, p

    # ---- MLLM side -------------------------------------------------------------------------
    def image_embeddings(
        self, pixel_values: torch.Tensor, image_grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Patches (N_patches, C*T*p*p) of every image -> (N_tokens, H) and the DeepStack list (Qwen3-VL)."""
        dtype = self.visual.patch_embed.proj.weight.dtype
        out = self.visual(pixel_values.to(dtype), grid_thw=image_grid_thw)
        if self.family == QWEN3_VL:
            embeds, deepstack = out
            return embeds, list(deepstack)
        return out, None

    def splice_image_embeddings(
        self, input_ids: torch.Tensor, image_embeds: torch.Tensor, image_token_id: int | None = None
    ) -> torch.Tensor:
        """Token embeddings with every ``<|image_pad|>`` replaced, in order, by an image embedding."""
        image_token_id = self.image_token_id if image_token_id is None else image_token_id
        inputs_embeds = self.language_model.get_input_embeddings()(input_ids)
        is_image = input_ids == image_token_id
        n_slots, n_embeds = int(is_image.sum()), image_embeds.shape[0]
        if n_slots != n_embeds:
            raise ValueError(
                f'the batch has {n_slots} <|image_pad|> tokens but its images give {n_embeds} '
                'image embeddings; each image needs grid_h * grid_w / merge^2 tokens'
            )
        return inputs_embeds.masked_scatter(is_image.unsqueeze(-1), image_embeds.to(inputs_embeds.dtype))

    def rope_position_ids(
        self, input_ids: torch.Tensor, image_grid_thw: torch.Tensor | None, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(3, B, L) M-RoPE position ids and rope deltas, from transformers' own ``get_rope_index``."""
        return rope_index(self.arch.mllm, self.family, input_ids, image_grid_thw, attention_mask)

    def decode_position_ids(self, index: int, rope_delta: int, device: torch.device) -> torch.Tensor:
        """(3, 1, 1) M-RoPE ids of the token at sequence index ``index`` in incremental decoding.

        What transformers' ``Qwen2_5_VLModel`` / ``Qwen3VLModel`` do after the prefill: every row is
        ``cache_position + rope_deltas``, with ``rope_deltas`` = max prompt position + 1 - prompt length
        from ``get_rope_index`` (text after the image continues from the image's largest position).
        """
        return torch.full((3, 1, 1), index + rope_delta, dtype=torch.long, device=device)

    def llm_last_hidden(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        deepstack: list[torch.Tensor] | None = None,
        visual_pos_masks: torch.Tensor | None = None,
        past_key_values: Cache | None = None,
    ) -> torch.Tensor:
        """The hidden state official training feeds to ``text_hidden_fcs`` (see module docstring).

        ``past_key_values``: a KV cache the call reads and extends in place (incremental decoding).
        """
        if position_ids.ndim != 3 or position_ids.shape[0] != 3:
            raise ValueError(f'Qwen-VL models need (3, B, L) M-RoPE position ids, got {tuple(position_ids.shape)}')
        text = self.language_model.model
        kwargs = dict(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
        if self.family == QWEN2_5_VL:
            return text(**kwargs).last_hidden_state
        if deepstack is not None:
            kwargs.update(deepstack_visual_embeds=deepstack, visual_pos_masks=visual_pos_masks)
        with _norm_input(text.norm) as captured:
            text(**kwargs)
        return captured[-1]

    def logits_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """Qwen3-VL's ``llm_last_hidden`` is pre-norm: the logits read the final norm's output."""
        return self.language_model.model.norm(hidden) if self.family == QWEN3_VL else hidden

    def last_hidden_from_inputs(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        image_grid_thw: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        image_embeds: tuple[torch.Tensor, list[torch.Tensor] | None] | None = None,
    ) -> torch.Tensor:
        """All MLLM stages of a batch: vision, splice, M-RoPE ids (when not given), the LLM."""
        embeds, deepstack = (
            image_embeds if image_embeds is not None else self.image_embeddings(pixel_values, image_grid_thw)
        )
        inputs_embeds = self.splice_image_embeddings(input_ids, embeds)
        if position_ids is None or position_ids.ndim != 3:
            position_ids, _ = self.rope_position_ids(input_ids, image_grid_thw, attention_mask)
        return self.llm_last_hidden(
            inputs_embeds, attention_mask, position_ids, deepstack, input_ids == self.image_token_id
        )

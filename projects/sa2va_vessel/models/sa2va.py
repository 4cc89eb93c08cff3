"""Sa2VA composed from transformers-native parts, computing what the official code computes.

``Sa2VAModules`` holds InternVLVisionModel + InternVLMultiModalProjector (``mlp1``) +
Qwen2ForCausalLM + Sam2Model + ``text_hidden_fcs``, with parameter names that map one-to-one
(``name_map.py``) onto an official Sa2VA checkpoint. Each method is one stage of the official
computation; ``../shared/fixtures/golden/README.md`` lists the behaviours kept here:

- pixel shuffle v2 and the projector on the CLS-less last ViT layer;
- the ``[SEG]`` embedding is the final-norm hidden state at the ``[SEG]`` token's own position;
- SAM2 adds ``no_mem_embed`` to the 64x64 image embedding (no memory attention), the prompt is
  two "not a point" tokens then the language embedding, multimask output with the best predicted
  IoU kept; logits are 256x256 (stride 4 of the 1024 input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Cache, InternVLVisionModel, Qwen2ForCausalLM, Sam2Model
from transformers.models.internvl.modeling_internvl import InternVLMultiModalProjector

from ..datasets.image_processing import normalise_sam2_tensor, normalise_tiles_tensor
from .configuration import Sa2VAArchitecture


def pixel_shuffle_v2(features: torch.Tensor, scale: float) -> torch.Tensor:
    """InternVL's pixel shuffle (ps_version v2): (N, W, H, C) -> (N, W*s, H*s, C/s^2)."""
    n, w, h, c = features.shape
    features = features.reshape(n, w, int(h * scale), int(c / scale))
    features = features.permute(0, 2, 1, 3).contiguous()
    features = features.reshape(n, int(h * scale), int(w * scale), int(c / (scale * scale)))
    return features.permute(0, 2, 1, 3).contiguous()


class Sa2VABase(nn.Module):
    """What every Sa2VA family shares: SAM2, ``text_hidden_fcs`` and the SAM2 stages.

    A family's class builds its MLLM parts, then calls ``_build_grounding`` (in this order, so that
    a seeded random init draws the same numbers as before the families were split).
    """

    family = 'internvl'
    arch: Sa2VAArchitecture

    def _build_grounding(self) -> None:
        self.sam2 = Sam2Model(self.arch.sam2)
        hidden, sam_hidden = self.arch.llm.hidden_size, self.arch.sam2_hidden_size
        self.text_hidden_fcs = nn.Sequential(
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, sam_hidden), nn.Dropout(0.0)
        )

    def logits_hidden(self, hidden: torch.Tensor) -> torch.Tensor:
        """``llm_last_hidden``'s output -> the state ``lm_head`` reads (identity unless it is pre-norm)."""
        return hidden

    def decode_position_ids(self, index: int, rope_delta: int, device: torch.device) -> torch.Tensor:
        """Position ids of the token at sequence index ``index`` in incremental decoding: (1, 1).

        ``rope_delta`` is 0 for 1-D positions (the Qwen-VL families override this for M-RoPE).
        """
        return torch.tensor([[index + rope_delta]], device=device)

    # ---- SAM2 side -------------------------------------------------------------------------
    def sam2_backbone(self, g_pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Hiera + FPN: the three kept levels, high to low resolution (256, 128, 64 px at 1024 input)."""
        dtype = self.sam2.vision_encoder.neck.convs[0].weight.dtype
        g_pixel_values = normalise_sam2_tensor(g_pixel_values)  # uint8 from the dataset, or float
        out = self.sam2.vision_encoder(pixel_values=g_pixel_values.to(dtype))
        return list(out.fpn_hidden_states)

    def sam2_decoder_inputs(self, fpn: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The image embedding (+ no-memory embedding) and the high-res features through conv_s0/s1.

        Kept apart from ``sam2_backbone`` so the frozen backbone can run without grad while
        conv_s0/conv_s1 (mask-decoder weights) still get their gradient.
        """
        decoder = self.sam2.mask_decoder
        feat_s0 = decoder.conv_s0(fpn[0].to(decoder.conv_s0.weight.dtype))
        feat_s1 = decoder.conv_s1(fpn[1].to(decoder.conv_s1.weight.dtype))
        no_mem = self.sam2.no_memory_embedding.reshape(1, -1, 1, 1)
        image_embed = fpn[2].to(no_mem.dtype) + no_mem
        return image_embed, [feat_s0, feat_s1]

    def decode_masks(
        self, image_embed: torch.Tensor, high_res: list[torch.Tensor], language_embeds: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """One mask per language embedding: (N, 256, 256) logits of the best-IoU multimask output.

        ``image_embed`` (N, C, 64, 64), ``high_res`` at 256 and 128 px, ``language_embeds`` (N, C).
        """
        dtype = self.sam2.mask_decoder.iou_token.weight.dtype
        # SAM2 pads an empty point prompt with label -1 and, with no box, pads once more: two
        # 'not a point' tokens, then the language embedding is appended last.
        sparse = torch.cat(
            [self.not_a_point_tokens(language_embeds.shape[0]), language_embeds.to(dtype).unsqueeze(1)], dim=1
        )
        return self.decode_with_prompt(image_embed, high_res, sparse)

    def not_a_point_tokens(self, n: int) -> torch.Tensor:
        """The two 'not a point' sparse tokens of an empty SAM2 prompt, (n, 2, C)."""
        dtype = self.sam2.mask_decoder.iou_token.weight.dtype
        return self.sam2.prompt_encoder.not_a_point_embed.weight.to(dtype).expand(n, 2, -1)

    def decode_with_prompt(
        self, image_embed: torch.Tensor, high_res: list[torch.Tensor], sparse: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The mask decoder with explicit sparse tokens (N, K, C): best-IoU multimask output.

        ``decode_masks`` (language prompt) and the video path's propagated frames (two
        'not a point' tokens only) both end here. ``sam_token`` is the best mask's output token,
        from which SAM2 makes the object pointer.
        """
        prompt_encoder, decoder = self.sam2.prompt_encoder, self.sam2.mask_decoder
        n = sparse.shape[0]
        dtype = decoder.iou_token.weight.dtype
        side = image_embed.shape[-1]
        dense = prompt_encoder.no_mask_embed.weight.to(dtype).reshape(1, -1, 1, 1).expand(n, -1, side, side)
        image_pe = self.sam2.get_image_wide_positional_embeddings().to(dtype).expand(n, -1, -1, -1)
        masks, iou_pred, sam_tokens, object_score_logits = decoder(
            image_embeddings=image_embed.to(dtype),
            image_positional_embeddings=image_pe,
            sparse_prompt_embeddings=sparse.to(dtype).unsqueeze(1),
            dense_prompt_embeddings=dense,
            multimask_output=True,
            high_resolution_features=[h.to(dtype) for h in high_res],
        )
        masks, iou_pred = masks[:, 0], iou_pred[:, 0]  # (N, 3, 256, 256), (N, 3)
        best = iou_pred.argmax(dim=-1)
        rows = torch.arange(n, device=masks.device)
        return {
            'mask_logits': masks[rows, best],
            'multimask_logits': masks,
            'iou_pred': iou_pred,
            'best_index': best,
            'object_score_logits': object_score_logits.reshape(n),
            'sam_token': sam_tokens[:, 0][rows, best],
        }


class Sa2VAModules(Sa2VABase):
    """The InternVL-family Sa2VA network: every module an official checkpoint holds weights for."""

    family = 'internvl'

    def __init__(self, arch: Sa2VAArchitecture, attn_implementation: str = 'sdpa') -> None:
        super().__init__()
        self.arch = arch
        arch.vision._attn_implementation = attn_implementation
        arch.llm._attn_implementation = attn_implementation
        self.vision_model = InternVLVisionModel(arch.vision)
        self.mlp1 = InternVLMultiModalProjector(arch.projector_config())
        self.language_model = Qwen2ForCausalLM(arch.llm)
        self._build_grounding()

    @property
    def vision_tower(self) -> nn.Module:
        """The frozen vision encoder (what ``compile_frozen_encoders`` compiles)."""
        return self.vision_model

    # ---- MLLM side -------------------------------------------------------------------------
    def vision_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Tiles (T, 3, 448, 448) -> pixel-shuffled ViT features (T, 256, C*4), before mlp1.

        Tiles come as uint8 (the dataset's raw pixels, normalised here on their device) or
        already normalised float.
        """
        dtype = self.vision_model.embeddings.patch_embeddings.projection.weight.dtype
        pixel_values = normalise_tiles_tensor(pixel_values)
        hidden = self.vision_model(pixel_values=pixel_values.to(dtype)).last_hidden_state[:, 1:]
        side = int(hidden.shape[1] ** 0.5)
        hidden = hidden.reshape(hidden.shape[0], side, side, -1)
        hidden = pixel_shuffle_v2(hidden, self.arch.downsample_ratio)
        return hidden.reshape(hidden.shape[0], -1, hidden.shape[-1])

    def splice_image_embeddings(
        self,
        input_ids: torch.Tensor,
        image_embeds: torch.Tensor,
        img_context_id: int,
        n_slots: int | None = None,
        image_index: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with every ``<IMG_CONTEXT>`` replaced, in order, by an image embedding.
        ``n_slots``: the count of ``<IMG_CONTEXT>`` tokens where the host knows it (counting them
        here reads the count from the device). ``image_index``: their flat positions ``b * L + t``
        in row-major order, where the host knows them (``BatchLayout.image_index``): the splice is
        then an ``index_copy``, whose backward is an ``index_select``. Without it the splice is a
        ``masked_scatter``, whose backward (a ``masked_select``) reads its count from the device in
        every step. Both give the same values and gradients."""
        inputs_embeds = self.language_model.get_input_embeddings()(input_ids)
        n_embeds = image_embeds.shape[0] * image_embeds.shape[1]
        if image_index is not None:
            n_slots = int(image_index.numel())  # a shape: known on the host
        else:
            is_image = input_ids == img_context_id
            n_slots = int(is_image.sum()) if n_slots is None else n_slots
        if n_slots != n_embeds:
            raise ValueError(
                f'the batch has {n_slots} <IMG_CONTEXT> tokens but its tiles give {n_embeds} '
                'image embeddings; each tile needs exactly num_image_token context tokens'
            )
        image_embeds = image_embeds.reshape(-1, image_embeds.shape[-1]).to(inputs_embeds.dtype)
        if image_index is not None:
            flat = inputs_embeds.reshape(-1, inputs_embeds.shape[-1])
            return flat.index_copy(0, image_index, image_embeds).view_as(inputs_embeds)
        return inputs_embeds.masked_scatter(is_image.unsqueeze(-1), image_embeds)

    def llm_last_hidden(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        past_key_values: Cache | None = None,
    ) -> torch.Tensor:
        """The decoder's last hidden state, after the final RMSNorm (= official hidden_states[-1]).

        ``past_key_values``: a KV cache the call reads and extends in place (incremental decoding).
        """
        out = self.language_model.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=past_key_values is not None,
        )
        return out.last_hidden_state


def mask_logits_to_size(mask_logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """256x256 decoder logits -> (H, W) as the official predict path does: bilinear to 1024, then to (H, W)."""
    x = F.interpolate(mask_logits.unsqueeze(1).float(), size=(1024, 1024), mode='bilinear', align_corners=False)
    x = F.interpolate(x, size=size, mode='bilinear', align_corners=False)
    return x[:, 0]


def build_sa2va(arch: Sa2VAArchitecture, attn_implementation: str = 'sdpa') -> Sa2VABase:
    """The Sa2VA network of ``arch``'s family (InternVL, Qwen2.5-VL or Qwen3-VL)."""
    if arch.family == 'internvl':
        return Sa2VAModules(arch, attn_implementation=attn_implementation)
    from .sa2va_qwen import Sa2VAQwenModules

    return Sa2VAQwenModules(arch, attn_implementation=attn_implementation)

"""The map between official Sa2VA parameter names and this project's transformers-native modules.

Official names (``vision_model.*`` InternViT, ``mlp1.*``, ``language_model.*`` Qwen2,
``grounding_encoder.sam2_model.*`` SAM2 in the original SAM2 naming, ``text_hidden_fcs.*``) map
onto ``Sa2VAModules`` (``vision_model`` = InternVLVisionModel, ``mlp1`` =
InternVLMultiModalProjector, ``language_model`` = Qwen2ForCausalLM, ``sam2`` = Sam2Model,
``text_hidden_fcs``). Most names are plain renames; two are not one-to-one:

- InternViT's fused ``attn.qkv`` is split into ``q_proj``/``k_proj``/``v_proj`` (rows in that order);
- SAM2's four ``point_embeddings.{j}`` (1, C) are the rows of one ``point_embed`` (4, C).

SAM2's video-memory modules are not used by single-image segmentation; they are kept aside
unchanged (``PASSTHROUGH_PREFIXES``) so that an export writes them back.

The Qwen-VL families (``Sa2VAChatModelQwen``: ``model`` = the whole transformers
``Qwen2_5_VLForConditionalGeneration`` / ``Qwen3VLForConditionalGeneration``) map by prefix only:
``model.model.visual.*`` <-> ``visual.*`` (vision tower + merger(s)), ``model.model.language_model.*``
<-> ``language_model.model.*``, ``model.lm_head.weight`` <-> ``language_model.lm_head.weight``; SAM2
and ``text_hidden_fcs`` as above. Every function takes the family (default InternVL).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

SAM2 = 'grounding_encoder.sam2_model.'

# (official template, ours template); {i} {j} stand for layer indices.
RENAMES: list[tuple[str, str]] = [
    # InternViT -> InternVLVisionModel
    ('vision_model.embeddings.class_embedding', 'vision_model.embeddings.cls_token'),
    ('vision_model.embeddings.patch_embedding.{p}', 'vision_model.embeddings.patch_embeddings.projection.{p}'),
    ('vision_model.embeddings.position_embedding', 'vision_model.embeddings.position_embeddings'),
    ('vision_model.encoder.layers.{i}.attn.proj.{p}', 'vision_model.encoder.layer.{i}.attention.projection_layer.{p}'),
    ('vision_model.encoder.layers.{i}.attn.q_norm.{p}', 'vision_model.encoder.layer.{i}.attention.q_norm.{p}'),
    ('vision_model.encoder.layers.{i}.attn.k_norm.{p}', 'vision_model.encoder.layer.{i}.attention.k_norm.{p}'),
    ('vision_model.encoder.layers.{i}.ls1', 'vision_model.encoder.layer.{i}.lambda_1'),
    ('vision_model.encoder.layers.{i}.ls2', 'vision_model.encoder.layer.{i}.lambda_2'),
    ('vision_model.encoder.layers.{i}.mlp.fc1.{p}', 'vision_model.encoder.layer.{i}.mlp.fc1.{p}'),
    ('vision_model.encoder.layers.{i}.mlp.fc2.{p}', 'vision_model.encoder.layer.{i}.mlp.fc2.{p}'),
    ('vision_model.encoder.layers.{i}.norm1.{p}', 'vision_model.encoder.layer.{i}.layernorm_before.{p}'),
    ('vision_model.encoder.layers.{i}.norm2.{p}', 'vision_model.encoder.layer.{i}.layernorm_after.{p}'),
    # projector: LayerNorm, Linear, GELU, Linear
    ('mlp1.0.{p}', 'mlp1.layer_norm.{p}'),
    ('mlp1.1.{p}', 'mlp1.linear_1.{p}'),
    ('mlp1.3.{p}', 'mlp1.linear_2.{p}'),
    # Qwen2 keeps its transformers names
    ('language_model.{rest}', 'language_model.{rest}'),
]
# Qwen2.5-VL / Qwen3-VL: prefix renames (the transformers 4.57 module names inside).
QWEN_RENAMES: list[tuple[str, str]] = [
    ('model.model.visual.{rest}', 'visual.{rest}'),
    ('model.model.language_model.{rest}', 'language_model.model.{rest}'),
    ('model.lm_head.weight', 'language_model.lm_head.weight'),
]
# Shared by every family: text_hidden_fcs and SAM2.
COMMON_RENAMES: list[tuple[str, str]] = [
    # text_hidden_fcs: Linear, ReLU, Linear, Dropout
    ('text_hidden_fcs.{i}.{p}', 'text_hidden_fcs.{i}.{p}'),
    # SAM2 Hiera trunk + FPN neck -> Sam2VisionModel
    (SAM2 + 'image_encoder.trunk.patch_embed.proj.{p}', 'sam2.vision_encoder.backbone.patch_embed.projection.{p}'),
    (SAM2 + 'image_encoder.trunk.pos_embed', 'sam2.vision_encoder.backbone.pos_embed'),
    (SAM2 + 'image_encoder.trunk.pos_embed_window', 'sam2.vision_encoder.backbone.pos_embed_window'),
    (SAM2 + 'image_encoder.trunk.blocks.{i}.norm1.{p}', 'sam2.vision_encoder.backbone.blocks.{i}.layer_norm1.{p}'),
    (SAM2 + 'image_encoder.trunk.blocks.{i}.norm2.{p}', 'sam2.vision_encoder.backbone.blocks.{i}.layer_norm2.{p}'),
    (SAM2 + 'image_encoder.trunk.blocks.{i}.attn.qkv.{p}', 'sam2.vision_encoder.backbone.blocks.{i}.attn.qkv.{p}'),
    (SAM2 + 'image_encoder.trunk.blocks.{i}.attn.proj.{p}', 'sam2.vision_encoder.backbone.blocks.{i}.attn.proj.{p}'),
    (
        SAM2 + 'image_encoder.trunk.blocks.{i}.mlp.layers.0.{p}',
        'sam2.vision_encoder.backbone.blocks.{i}.mlp.proj_in.{p}',
    ),
    (
        SAM2 + 'image_encoder.trunk.blocks.{i}.mlp.layers.1.{p}',
        'sam2.vision_encoder.backbone.blocks.{i}.mlp.proj_out.{p}',
    ),
    (SAM2 + 'image_encoder.trunk.blocks.{i}.proj.{p}', 'sam2.vision_encoder.backbone.blocks.{i}.proj.{p}'),
    (SAM2 + 'image_encoder.neck.convs.{i}.conv.{p}', 'sam2.vision_encoder.neck.convs.{i}.{p}'),
    # prompt encoder
    (
        SAM2 + 'sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix',
        'sam2.shared_image_embedding.positional_embedding',
    ),
    (SAM2 + 'sam_prompt_encoder.not_a_point_embed.weight', 'sam2.prompt_encoder.not_a_point_embed.weight'),
    (SAM2 + 'sam_prompt_encoder.no_mask_embed.weight', 'sam2.prompt_encoder.no_mask_embed.weight'),
    (SAM2 + 'sam_prompt_encoder.mask_downscaling.0.{p}', 'sam2.prompt_encoder.mask_embed.conv1.{p}'),
    (SAM2 + 'sam_prompt_encoder.mask_downscaling.1.{p}', 'sam2.prompt_encoder.mask_embed.layer_norm1.{p}'),
    (SAM2 + 'sam_prompt_encoder.mask_downscaling.3.{p}', 'sam2.prompt_encoder.mask_embed.conv2.{p}'),
    (SAM2 + 'sam_prompt_encoder.mask_downscaling.4.{p}', 'sam2.prompt_encoder.mask_embed.layer_norm2.{p}'),
    (SAM2 + 'sam_prompt_encoder.mask_downscaling.6.{p}', 'sam2.prompt_encoder.mask_embed.conv3.{p}'),
    # mask decoder
    (
        SAM2 + 'sam_mask_decoder.transformer.layers.{i}.{attn}.out_proj.{p}',
        'sam2.mask_decoder.transformer.layers.{i}.{attn}.o_proj.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.layers.{i}.{attn}.{qkv}_proj.{p}',
        'sam2.mask_decoder.transformer.layers.{i}.{attn}.{qkv}_proj.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.layers.{i}.norm{n}.{p}',
        'sam2.mask_decoder.transformer.layers.{i}.layer_norm{n}.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.layers.{i}.mlp.layers.0.{p}',
        'sam2.mask_decoder.transformer.layers.{i}.mlp.proj_in.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.layers.{i}.mlp.layers.1.{p}',
        'sam2.mask_decoder.transformer.layers.{i}.mlp.proj_out.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.final_attn_token_to_image.out_proj.{p}',
        'sam2.mask_decoder.transformer.final_attn_token_to_image.o_proj.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.final_attn_token_to_image.{qkv}_proj.{p}',
        'sam2.mask_decoder.transformer.final_attn_token_to_image.{qkv}_proj.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.transformer.norm_final_attn.{p}',
        'sam2.mask_decoder.transformer.layer_norm_final_attn.{p}',
    ),
    (SAM2 + 'sam_mask_decoder.output_upscaling.0.{p}', 'sam2.mask_decoder.upscale_conv1.{p}'),
    (SAM2 + 'sam_mask_decoder.output_upscaling.1.{p}', 'sam2.mask_decoder.upscale_layer_norm.{p}'),
    (SAM2 + 'sam_mask_decoder.output_upscaling.3.{p}', 'sam2.mask_decoder.upscale_conv2.{p}'),
    (
        SAM2 + 'sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}',
        'sam2.mask_decoder.output_hypernetworks_mlps.{i}.proj_in.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.1.{p}',
        'sam2.mask_decoder.output_hypernetworks_mlps.{i}.layers.0.{p}',
    ),
    (
        SAM2 + 'sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.2.{p}',
        'sam2.mask_decoder.output_hypernetworks_mlps.{i}.proj_out.{p}',
    ),
    (SAM2 + 'sam_mask_decoder.{head}.layers.0.{p}', 'sam2.mask_decoder.{head}.proj_in.{p}'),
    (SAM2 + 'sam_mask_decoder.{head}.layers.1.{p}', 'sam2.mask_decoder.{head}.layers.0.{p}'),
    (SAM2 + 'sam_mask_decoder.{head}.layers.2.{p}', 'sam2.mask_decoder.{head}.proj_out.{p}'),
    (SAM2 + 'sam_mask_decoder.{token}.weight', 'sam2.mask_decoder.{token}.weight'),
    (SAM2 + 'sam_mask_decoder.conv_s{n}.{p}', 'sam2.mask_decoder.conv_s{n}.{p}'),
    (SAM2 + 'no_mem_embed', 'sam2.no_memory_embedding'),
]

# What each placeholder may stand for.
PLACEHOLDERS = {
    'i': r'\d+',
    'j': r'\d+',
    'n': r'\d+',
    'p': r'weight|bias',
    'rest': r'.+',
    'attn': r'self_attn|cross_attn_token_to_image|cross_attn_image_to_token',
    'qkv': r'q|k|v',
    'head': r'iou_prediction_head|pred_obj_score_head',
    'token': r'iou_token|mask_tokens|obj_score_token',
}

# InternViT's fused qkv: one official tensor <-> three of ours, stacked on dim 0.
FUSED_QKV = (
    'vision_model.encoder.layers.{i}.attn.qkv.{p}',
    [
        'vision_model.encoder.layer.{i}.attention.q_proj.{p}',
        'vision_model.encoder.layer.{i}.attention.k_proj.{p}',
        'vision_model.encoder.layer.{i}.attention.v_proj.{p}',
    ],
)
# SAM2's point embeddings: official row tensors <-> rows of one table.
POINT_EMBED = (SAM2 + 'sam_prompt_encoder.point_embeddings.{j}.weight', 'sam2.prompt_encoder.point_embed.weight')
# transformers keeps a second, tied copy of SAM2's random-Fourier matrix inside the prompt encoder.
TIED_COPIES = {
    'sam2.prompt_encoder.shared_embedding.positional_embedding': 'sam2.shared_image_embedding.positional_embedding'
}

# SAM2 video-memory modules: unused for single images, carried through unchanged.
PASSTHROUGH_PREFIXES = tuple(
    SAM2 + p
    for p in (
        'memory_attention.',
        'memory_encoder.',
        'mask_downsample.',
        'maskmem_tpos_enc',
        'no_mem_pos_enc',
        'no_obj_ptr',
        'obj_ptr_proj.',
        'obj_ptr_tpos_proj.',
    )
)


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, rx in PLACEHOLDERS.items():
        pattern = pattern.replace(re.escape('{' + name + '}'), f'(?P<{name}>{rx})')
    return re.compile(pattern + r'\Z')


@dataclass(frozen=True)
class _Rule:
    src: re.Pattern
    dst: str


_FAMILY_RENAMES = {
    'internvl': RENAMES + COMMON_RENAMES,
    'qwen2_5_vl': QWEN_RENAMES + COMMON_RENAMES,
    'qwen3_vl': QWEN_RENAMES + COMMON_RENAMES,
}
_TO_OURS = {f: [_Rule(_compile(o), t) for o, t in r] for f, r in _FAMILY_RENAMES.items()}
_TO_OFFICIAL = {f: [_Rule(_compile(t), o) for o, t in r] for f, r in _FAMILY_RENAMES.items()}
_QKV_OFFICIAL = _compile(FUSED_QKV[0])
_QKV_OURS = [_compile(t) for t in FUSED_QKV[1]]
_POINT_OFFICIAL = _compile(POINT_EMBED[0])


def _apply(rules: list[_Rule], name: str) -> str | None:
    for rule in rules:
        match = rule.src.match(name)
        if match:
            return rule.dst.format(**match.groupdict())
    return None


def is_passthrough(official_name: str) -> bool:
    return official_name.startswith(PASSTHROUGH_PREFIXES)


def _rules(table: dict[str, list[_Rule]], family: str) -> list[_Rule]:
    if family not in table:
        raise ValueError(f'unknown Sa2VA family {family!r}; known: {sorted(table)}')
    return table[family]


def official_to_ours(
    name: str, tensor: torch.Tensor, family: str = 'internvl'
) -> list[tuple[str, torch.Tensor]] | None:
    """Our (name, tensor) pieces for one official tensor; None when no rule knows the name.

    Point-embedding rows come back under their table's name with a ``#row`` suffix, for
    ``assemble_point_embed`` to stack.
    """
    rules = _rules(_TO_OURS, family)
    match = _QKV_OFFICIAL.match(name) if family == 'internvl' else None
    if match:
        chunks = torch.chunk(tensor, 3, dim=0)
        return [(t.format(**match.groupdict()), c) for t, c in zip(FUSED_QKV[1], chunks)]
    match = _POINT_OFFICIAL.match(name)
    if match:
        return [(f'{POINT_EMBED[1]}#{match["j"]}', tensor)]
    ours = _apply(rules, name)
    return None if ours is None else [(ours, tensor)]


def assemble_point_embed(pieces: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stack the ``point_embed.weight#j`` rows (each (1, C)) into the (4, C) table."""
    rows = sorted(pieces.items(), key=lambda kv: int(kv[0].split('#')[1]))
    return torch.cat([t for _, t in rows], dim=0)


def ours_to_official(state: dict[str, torch.Tensor], family: str = 'internvl') -> dict[str, torch.Tensor]:
    """Our full state dict (base modules, no adapters) -> the official name layout.

    Raises KeyError naming every tensor no rule can write back.
    """
    rules = _rules(_TO_OFFICIAL, family)
    qkv_rules = _QKV_OURS if family == 'internvl' else []
    out: dict[str, torch.Tensor] = {}
    unknown = []
    qkv_parts: dict[str, list[torch.Tensor | None]] = {}
    for name, tensor in state.items():
        if name in TIED_COPIES:
            continue
        if name == POINT_EMBED[1]:
            for j in range(tensor.shape[0]):
                out[POINT_EMBED[0].format(j=j)] = tensor[j : j + 1].clone()
            continue
        for k, pattern in enumerate(qkv_rules):
            match = pattern.match(name)
            if match:
                fused = FUSED_QKV[0].format(**match.groupdict())
                qkv_parts.setdefault(fused, [None, None, None])[k] = tensor
                break
        else:
            official = _apply(rules, name)
            if official is None:
                unknown.append(name)
            else:
                out[official] = tensor
    for fused, parts in qkv_parts.items():
        if any(p is None for p in parts):
            raise KeyError(f'{fused}: q/k/v parts incomplete in the state dict')
        out[fused] = torch.cat(parts, dim=0)
    if unknown:
        raise KeyError(f'no official name for {len(unknown)} tensors: {unknown[:10]}')
    return out


# ---- SAM2 video memory (used by models/video.py) ---------------------------------------------
# The 105 memory tensors of an official checkpoint (the ``PASSTHROUGH_PREFIXES`` above) onto
# ``video.SAM2VideoMemory``, whose parts are transformers' Sam2Video modules. The memory mask
# downsampler is Sequential(conv, LayerNorm2d, GELU) x 4 + a 1x1 conv in the official code
# (total stride 16, stride 2, fixed in every Sa2VA release); transformers groups each triple.
MEMORY = 'memory.'
MEMORY_RENAMES: list[tuple[str, str]] = [
    (
        SAM2 + 'memory_attention.layers.{i}.{mattn}.out_proj.{p}',
        MEMORY + 'memory_attention.layers.{i}.{mattn}.o_proj.{p}',
    ),
    (
        SAM2 + 'memory_attention.layers.{i}.{mattn}.{qkv}_proj.{p}',
        MEMORY + 'memory_attention.layers.{i}.{mattn}.{qkv}_proj.{p}',
    ),
    (SAM2 + 'memory_attention.layers.{i}.linear{n}.{p}', MEMORY + 'memory_attention.layers.{i}.linear{n}.{p}'),
    (SAM2 + 'memory_attention.layers.{i}.norm{n}.{p}', MEMORY + 'memory_attention.layers.{i}.layer_norm{n}.{p}'),
    (SAM2 + 'memory_attention.norm.{p}', MEMORY + 'memory_attention.layer_norm.{p}'),
    *[
        (
            SAM2 + f'memory_encoder.mask_downsampler.encoder.{3 * k}.{{p}}',
            MEMORY + f'memory_encoder.mask_downsampler.layers.{k}.conv.{{p}}',
        )
        for k in range(4)
    ],
    *[
        (
            SAM2 + f'memory_encoder.mask_downsampler.encoder.{3 * k + 1}.{{p}}',
            MEMORY + f'memory_encoder.mask_downsampler.layers.{k}.layer_norm.{{p}}',
        )
        for k in range(4)
    ],
    (
        SAM2 + 'memory_encoder.mask_downsampler.encoder.12.{p}',
        MEMORY + 'memory_encoder.mask_downsampler.final_conv.{p}',
    ),
    (SAM2 + 'memory_encoder.pix_feat_proj.{p}', MEMORY + 'memory_encoder.feature_projection.{p}'),
    (
        SAM2 + 'memory_encoder.fuser.layers.{i}.dwconv.{p}',
        MEMORY + 'memory_encoder.memory_fuser.layers.{i}.depthwise_conv.{p}',
    ),
    (
        SAM2 + 'memory_encoder.fuser.layers.{i}.norm.{p}',
        MEMORY + 'memory_encoder.memory_fuser.layers.{i}.layer_norm.{p}',
    ),
    (
        SAM2 + 'memory_encoder.fuser.layers.{i}.pwconv{n}.{p}',
        MEMORY + 'memory_encoder.memory_fuser.layers.{i}.pointwise_conv{n}.{p}',
    ),
    (SAM2 + 'memory_encoder.fuser.layers.{i}.g_weight', MEMORY + 'memory_encoder.memory_fuser.layers.{i}.scale'),
    (SAM2 + 'memory_encoder.out_proj.{p}', MEMORY + 'memory_encoder.projection.{p}'),
    (SAM2 + 'maskmem_tpos_enc', MEMORY + 'memory_temporal_positional_encoding'),
    (SAM2 + 'no_mem_pos_enc', MEMORY + 'no_memory_positional_encoding'),
    (SAM2 + 'no_obj_ptr', MEMORY + 'no_object_pointer'),
    (SAM2 + 'obj_ptr_proj.layers.0.{p}', MEMORY + 'object_pointer_proj.proj_in.{p}'),
    (SAM2 + 'obj_ptr_proj.layers.1.{p}', MEMORY + 'object_pointer_proj.layers.0.{p}'),
    (SAM2 + 'obj_ptr_proj.layers.2.{p}', MEMORY + 'object_pointer_proj.proj_out.{p}'),
    (SAM2 + 'mask_downsample.{p}', MEMORY + 'mask_downsample.{p}'),
]
PLACEHOLDERS['mattn'] = r'self_attn|cross_attn_image'
_MEMORY_TO_OURS = [_Rule(_compile(o), t) for o, t in MEMORY_RENAMES]
_MEMORY_TO_OFFICIAL = [_Rule(_compile(t), o) for o, t in MEMORY_RENAMES]


def memory_official_to_ours(name: str) -> str | None:
    """Our name (``memory.*``) of one official SAM2 memory tensor; None when no rule knows it."""
    return _apply(_MEMORY_TO_OURS, name)


def memory_ours_to_official(name: str) -> str | None:
    """The official name of one ``memory.*`` tensor; None when no rule knows it."""
    return _apply(_MEMORY_TO_OFFICIAL, name)

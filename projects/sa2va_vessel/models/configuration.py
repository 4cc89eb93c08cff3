"""Reading a Sa2VA checkpoint directory's configuration into transformers-native configs.

Three families are recognised from ``config.json`` alone (``model_type`` is ``sa2va_chat`` for all):

- InternVL (``Sa2VAChatConfig.to_dict``): ``vision_config`` (InternViT), ``llm_config`` (Qwen2) and
  the projector (``downsample_ratio``);
- Qwen2.5-VL (``Sa2VAChatConfigQwen``, a ``Qwen2_5_VLConfig``): ``text_config.model_type``
  ``qwen2_5_vl_text``, ``vision_config.model_type`` ``qwen2_5_vl``;
- Qwen3-VL (``Sa2VAChatConfigQwen``, a ``Qwen3VLConfig``): ``qwen3_vl_text`` / ``qwen3_vl``.

SAM2 is not in it because the official wrapper hard-codes Hiera-L. A
directory may carry ``sam2_config.json`` (written by ``tools/make_tiny_sa2va.py``; the golden
fixture calls it ``sam2_tiny_config.json``) in the official SAM2 builder's vocabulary
(trunk/neck/...) to describe another SAM2; without it, Hiera-L is assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config, Sam2Config

# config.json itself (family, template, tile size, tiling) is read by the data side's reader, so
# that the model and the data cannot disagree; this module builds the transformers configs.
from ..datasets.checkpoint_config import (
    INTERNVL,
    QWEN_FAMILIES,
    CheckpointConfigError,
    detect_family,
    inputs_from_config,
    qwen_mllm_config,
    read_checkpoint_config,
    read_json_file,
    template_of,
)

SAM2_CONFIG_FILES = ('sam2_config.json', 'sam2_tiny_config.json')

# The SAM2-Hiera-L the official Sa2VA wrapper builds (sam2_hiera_l.yaml), in the same vocabulary
# as the sam2_config.json files.
SAM2_HIERA_LARGE: dict[str, Any] = {
    'trunk': {
        'embed_dim': 144,
        'num_heads': 2,
        'stages': [2, 6, 36, 4],
        'global_att_blocks': [23, 33, 43],
        'window_pos_embed_bkg_spatial_size': [7, 7],
        'window_spec': [8, 4, 16, 8],
        'q_pool': 3,
        'q_stride': [2, 2],
        'dim_mul': 2.0,
        'head_mul': 2.0,
    },
    'neck': {
        'd_model': 256,
        'backbone_channel_list': [1152, 576, 288, 144],
        'fpn_top_down_levels': [2, 3],
        'kernel_size': 1,
        'stride': 1,
        'padding': 0,
    },
}

# Fixed by the official code for every Sa2VA release (see the golden fixture's README).
SAM2_IMAGE_SIZE = 1024
SAM2_BACKBONE_STRIDE = 16


@dataclass
class Sa2VAArchitecture:
    """Everything needed to build the Sa2VA modules, read from one checkpoint directory.

    ``family`` is ``internvl``, ``qwen2_5_vl`` or ``qwen3_vl``. For the Qwen families ``mllm`` is the
    whole transformers config (``Qwen2_5_VLConfig`` / ``Qwen3VLConfig``), ``vision`` and ``llm`` are
    its ``vision_config`` and ``text_config``, and the InternVL tiling fields keep their defaults.
    """

    path: Path
    vision: Any
    llm: Any
    sam2: Sam2Config
    sam2_official: dict[str, Any]
    downsample_ratio: float
    template: str
    force_image_size: int
    min_dynamic_patch: int
    max_dynamic_patch: int
    use_thumbnail: bool
    select_layer: int
    ps_version: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)
    family: str = INTERNVL
    mllm: Any = None

    @property
    def is_qwen(self) -> bool:
        return self.family in QWEN_FAMILIES

    @property
    def num_image_tokens(self) -> int:
        """Tokens per 448-px tile after pixel shuffle (256 for InternVL)."""
        patches = (self.force_image_size // self.vision.patch_size[0]) ** 2
        return int(patches * self.downsample_ratio**2)

    @property
    def sam2_hidden_size(self) -> int:
        return self.sam2.mask_decoder_config.hidden_size

    def projector_config(self) -> InternVLConfig:
        """The InternVLConfig that ``InternVLMultiModalProjector`` is built from."""
        return InternVLConfig(
            vision_config=self.vision.to_dict(),
            text_config=self.llm.to_dict(),
            downsample_ratio=self.downsample_ratio,
            projector_hidden_act='gelu',
        )


def vision_config_from_official(vc: dict[str, Any], path: Path) -> InternVLVisionConfig:
    """InternViT (``InternVisionConfig``) -> transformers' ``InternVLVisionConfig``."""
    return InternVLVisionConfig(
        hidden_size=vc['hidden_size'],
        num_hidden_layers=vc['num_hidden_layers'],
        num_attention_heads=vc['num_attention_heads'],
        intermediate_size=vc['intermediate_size'],
        attention_bias=vc.get('qkv_bias', True),
        use_qk_norm=vc.get('qk_normalization', False),
        hidden_act=vc.get('hidden_act', 'gelu'),
        norm_type=vc.get('norm_type', 'layer_norm'),
        layer_norm_eps=vc.get('layer_norm_eps', 1e-6),
        image_size=vc.get('image_size', 448),
        patch_size=vc.get('patch_size', 14),
        num_channels=vc.get('num_channels', 3),
        # InternViT has no final norm: transformers models that with use_mean_pooling=True.
        use_mean_pooling=True,
        use_absolute_position_embeddings=True,
        attention_dropout=0.0,
        hidden_dropout_prob=0.0,
        projection_dropout=0.0,
    )


def llm_config_from_official(lc: dict[str, Any], path: Path) -> Qwen2Config:
    archs = lc.get('architectures') or []
    model_type = lc.get('model_type')
    if model_type != 'qwen2' and 'Qwen2ForCausalLM' not in archs:
        raise CheckpointConfigError(
            f'{path}: llm_config is {model_type!r} ({archs}); this project loads InternVL-based Sa2VA '
            'checkpoints whose LLM is Qwen2/Qwen2.5 (Sa2VA-1B/4B, Sa2VA-InternVL3-2B/8B/14B) and the '
            'Qwen2.5-VL / Qwen3-VL ones. The InternLM2-based Sa2VA-8B and Sa2VA-26B (and Phi-3-based '
            'releases) are not supported: their LLM has no transformers-native class.'
        )
    kept = {k: v for k, v in lc.items() if k not in ('architectures', 'auto_map', '_name_or_path')}
    return Qwen2Config(**kept)


def sam2_config_from_official(sc: dict[str, Any]) -> Sam2Config:
    """The official SAM2 builder's numbers (Hiera trunk + FPN neck) -> transformers' ``Sam2Config``."""
    trunk, neck = sc['trunk'], sc['neck']
    n_stages = len(trunk['stages'])
    dims = [int(trunk['embed_dim'] * trunk.get('dim_mul', 2.0) ** i) for i in range(n_stages)]
    heads = [int(trunk['num_heads'] * trunk.get('head_mul', 2.0) ** i) for i in range(n_stages)]
    hidden = neck['d_model']
    feature_sizes = [[SAM2_IMAGE_SIZE // s] * 2 for s in (4, 8, 16)]
    backbone = dict(
        model_type='sam2_hiera_det_model',
        hidden_size=trunk['embed_dim'],
        num_attention_heads=trunk['num_heads'],
        image_size=[SAM2_IMAGE_SIZE, SAM2_IMAGE_SIZE],
        query_stride=list(trunk.get('q_stride', [2, 2])),
        window_positional_embedding_background_size=list(trunk['window_pos_embed_bkg_spatial_size']),
        num_query_pool_stages=trunk.get('q_pool', 3),
        blocks_per_stage=list(trunk['stages']),
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=heads,
        window_size_per_stage=list(trunk['window_spec']),
        global_attention_blocks=list(trunk['global_att_blocks']),
    )
    if list(neck['backbone_channel_list']) != dims[::-1]:
        raise CheckpointConfigError(
            f"SAM2 neck backbone_channel_list {neck['backbone_channel_list']} does not match the trunk's "
            f'stage widths {dims[::-1]}'
        )
    vision = dict(
        backbone_config=backbone,
        backbone_channel_list=list(neck['backbone_channel_list']),
        backbone_feature_sizes=feature_sizes,
        fpn_hidden_size=hidden,
        fpn_kernel_size=neck.get('kernel_size', 1),
        fpn_stride=neck.get('stride', 1),
        fpn_padding=neck.get('padding', 0),
        fpn_top_down_levels=list(neck.get('fpn_top_down_levels', [2, 3])),
        num_feature_levels=3,
    )
    prompt = dict(
        hidden_size=hidden,
        image_size=SAM2_IMAGE_SIZE,
        patch_size=SAM2_BACKBONE_STRIDE,
        mask_input_channels=16,
        num_point_embeddings=4,
    )
    decoder = dict(
        hidden_size=hidden,
        mlp_dim=2048,
        num_hidden_layers=2,
        num_attention_heads=8,
        attention_downsample_rate=2,
        num_multimask_outputs=3,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        dynamic_multimask_via_stability=True,
        dynamic_multimask_stability_delta=0.05,
        dynamic_multimask_stability_thresh=0.98,
    )
    return Sam2Config(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def read_sam2_official_config(path: Path) -> dict[str, Any]:
    for name in SAM2_CONFIG_FILES:
        if (path / name).is_file():
            return read_json_file(path / name)
    return SAM2_HIERA_LARGE


def read_architecture(path: str | Path) -> Sa2VAArchitecture:
    """Read ``config.json`` (+ optional ``sam2_config.json``) of a Sa2VA checkpoint directory."""
    path = Path(path)
    return architecture_from_config(read_checkpoint_config(path), read_sam2_official_config(path), path)


def architecture_from_config(cfg: dict[str, Any], sam2_official: dict[str, Any], path: Path) -> Sa2VAArchitecture:
    """The architecture of an official ``config.json`` content (+ SAM2 description); ``path`` names it."""
    model_type = cfg.get('model_type')
    if model_type == 'sa2va_chat' and 'text_config' in cfg and 'llm_config' not in cfg:
        return qwen_architecture_from_config(cfg, sam2_official, path)
    if model_type != 'sa2va_chat' or 'vision_config' not in cfg or 'llm_config' not in cfg:
        raise CheckpointConfigError(
            f"{path / 'config.json'}: model_type {model_type!r} is not a Sa2VA config ('sa2va_chat' with "
            'vision_config and llm_config (InternVL family) or text_config (Qwen2.5-VL / Qwen3-VL family))'
        )
    if cfg.get('ps_version', 'v2') != 'v2':
        raise CheckpointConfigError(f'{path / "config.json"}: ps_version {cfg["ps_version"]!r}; only v2 is supported')
    if cfg.get('select_layer', -1) != -1:
        raise CheckpointConfigError(f'{path / "config.json"}: select_layer {cfg["select_layer"]}; only -1 is supported')
    inputs = inputs_from_config(cfg, path)
    return Sa2VAArchitecture(
        path=path,
        vision=vision_config_from_official(cfg['vision_config'], path),
        llm=llm_config_from_official(cfg['llm_config'], path),
        sam2=sam2_config_from_official(sam2_official),
        sam2_official=sam2_official,
        downsample_ratio=inputs.downsample_ratio,
        template=inputs.template,
        force_image_size=inputs.image_size,
        min_dynamic_patch=inputs.min_num,
        max_dynamic_patch=inputs.max_num,
        use_thumbnail=inputs.use_thumbnail,
        select_layer=int(cfg.get('select_layer', -1)),
        ps_version=cfg.get('ps_version', 'v2'),
        raw=cfg,
    )


def qwen_architecture_from_config(cfg: dict[str, Any], sam2_official: dict[str, Any], path: Path) -> Sa2VAArchitecture:
    """A Sa2VA-Qwen2.5-VL / -Qwen3-VL ``config.json`` (``Sa2VAChatConfigQwen``) as transformers configs.

    The Qwen2.5-VL export also carries the base model's flat LLM keys at top level (with the base
    vocabulary size); the nested ``text_config`` is authoritative, as in the official class.
    """
    family = detect_family(cfg, path)
    mllm = qwen_mllm_config(cfg, path)
    if mllm.text_config.tie_word_embeddings:
        raise CheckpointConfigError(
            f'{path / "config.json"}: text_config.tie_word_embeddings is true; Sa2VA '
            'exports always carry an untied lm_head'
        )
    return Sa2VAArchitecture(
        path=path,
        vision=mllm.vision_config,
        llm=mllm.text_config,
        sam2=sam2_config_from_official(sam2_official),
        sam2_official=sam2_official,
        downsample_ratio=0.5,
        template=template_of(cfg, path),
        force_image_size=0,
        min_dynamic_patch=1,
        max_dynamic_patch=1,
        use_thumbnail=False,
        select_layer=-1,
        ps_version='v2',
        raw=cfg,
        family=family,
        mllm=mllm,
    )

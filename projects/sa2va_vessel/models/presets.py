"""Architectures of published Sa2VA checkpoints and of the project's tiny test model.

Each preset is the ``config.json`` an official export would carry (``Sa2VAChatConfig.to_dict``
form) plus the SAM2 description. ``tools/make_tiny_sa2va.py`` writes random checkpoints from them;
the tiny one is for tests and the demo, the others (random weights at real shapes) for
benchmarks. Real weights are only ever read from a local directory.
"""
from __future__ import annotations

import copy
from typing import Any

from .configuration import SAM2_HIERA_LARGE

# InternViT-300M-448px (InternVL2.5 / InternVL3 1B-14B)
INTERNVIT_300M = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
TINY_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

# Qwen2.5 LLMs (hidden, layers, heads, kv heads, intermediate)
QWEN = {
    'qwen2.5-0.5b': dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                         intermediate_size=4864),
    'qwen2.5-1.5b': dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         intermediate_size=8960),
    'qwen2.5-3b': dict(hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
                       intermediate_size=11008),
    'qwen2.5-7b': dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                       intermediate_size=18944),
    'qwen2.5-14b': dict(hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                        intermediate_size=13824),
    'tiny': dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128),
}

# The tiny SAM2 of the golden fixture: Hiera with 16-dim first stage, 32-dim FPN.
SAM2_TINY: dict[str, Any] = {
    'trunk': {'embed_dim': 16, 'num_heads': 2, 'stages': [1, 2, 3, 1], 'global_att_blocks': [4],
              'window_pos_embed_bkg_spatial_size': [7, 7], 'window_spec': [8, 4, 16, 8], 'q_pool': 3,
              'q_stride': [2, 2], 'dim_mul': 2.0, 'head_mul': 2.0},
    'neck': {'d_model': 32, 'backbone_channel_list': [128, 64, 32, 16], 'fpn_top_down_levels': [2, 3],
             'kernel_size': 1, 'stride': 1, 'padding': 0},
    # the golden fixture's tiny SAM2 video memory (read by models/video.py)
    'memory_attention': {'d_model': 32, 'num_layers': 2,
                         'layer': {'dim_feedforward': 64, 'dropout': 0.1, 'activation': 'relu'},
                         'self_attention': {'rope_theta': 10000.0, 'num_heads': 1, 'downsample_rate': 1},
                         'cross_attention': {'kv_in_dim': 8}},
    'memory_encoder': {'out_dim': 8, 'in_dim': 32,
                       'mask_downsampler': {'embed_dim': 32, 'kernel_size': 3, 'stride': 2, 'padding': 1,
                                            'total_stride': 16},
                       'fuser': {'num_layers': 2, 'layer': {'dim': 32, 'kernel_size': 7, 'padding': 3,
                                                            'layer_scale_init_value': 1e-6}}},
}

PRESETS = {
    # name: (vision, llm, sam2, tie_word_embeddings)
    'tiny': (TINY_VIT, 'tiny', SAM2_TINY, False),
    'sa2va-1b': (INTERNVIT_300M, 'qwen2.5-0.5b', SAM2_HIERA_LARGE, True),
    'sa2va-4b': (INTERNVIT_300M, 'qwen2.5-3b', SAM2_HIERA_LARGE, True),
    'sa2va-internvl3-2b': (INTERNVIT_300M, 'qwen2.5-1.5b', SAM2_HIERA_LARGE, False),
    'sa2va-internvl3-8b': (INTERNVIT_300M, 'qwen2.5-7b', SAM2_HIERA_LARGE, False),
    'sa2va-internvl3-14b': (INTERNVIT_300M, 'qwen2.5-14b', SAM2_HIERA_LARGE, False),
}


def official_config(preset: str, vocab_size: int, dtype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json content, sam2 description) for a preset, in the official form."""
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; known: {sorted(PRESETS)}')
    vit, llm_name, sam2, tie = PRESETS[preset]
    llm = dict(QWEN[llm_name])
    vision_config = dict(
        architectures=['InternVisionModel'], model_type='intern_vit_6b', attention_dropout=0.0,
        drop_path_rate=0.0, dropout=0.0, hidden_act='gelu', image_size=448, patch_size=14, num_channels=3,
        initializer_factor=1.0, initializer_range=0.02, layer_norm_eps=1e-6, norm_type='layer_norm',
        qk_normalization=False, qkv_bias=True, use_flash_attn=False, **vit)
    llm_config = dict(
        architectures=['Qwen2ForCausalLM'], model_type='qwen2', attention_dropout=0.0, bos_token_id=151643,
        eos_token_id=151645, hidden_act='silu', initializer_range=0.02, max_position_embeddings=32768,
        max_window_layers=llm['num_hidden_layers'], rms_norm_eps=1e-6, rope_scaling=None, rope_theta=1000000.0,
        sliding_window=None, use_cache=True, use_sliding_window=False, tie_word_embeddings=tie,
        vocab_size=vocab_size, dtype=dtype, **llm)
    config = dict(
        architectures=['Sa2VAChatModel'],
        auto_map={'AutoConfig': 'configuration_sa2va_chat.Sa2VAChatConfig',
                  'AutoModel': 'modeling_sa2va_chat.Sa2VAChatModel',
                  'AutoModelForCausalLM': 'modeling_sa2va_chat.Sa2VAChatModel'},
        model_type='sa2va_chat', template='qwen_chat', downsample_ratio=0.5, dynamic_image_size=True,
        force_image_size=448, hidden_size=llm['hidden_size'], min_dynamic_patch=1, max_dynamic_patch=12,
        pad2square=False, ps_version='v2', select_layer=-1, use_thumbnail=True, use_backbone_lora=0,
        use_llm_lora=0, tie_word_embeddings=tie, dtype=dtype, output_attentions=False,
        transformers_version=None, vision_config=vision_config, llm_config=llm_config)
    return config, copy.deepcopy(sam2)


# Real Sa2VA-InternVL vocabulary: Qwen2.5's 151,643 base tokens + the 36 added tokens (ids
# 151643..151678), in the order of ``datasets/tiny_tokenizer.ADDED_TOKENS``. A model built from a
# preset (no checkpoint directory, no tokenizer) takes its special-token ids from this layout.
REAL_VOCAB_SIZE = 151679
PRESET_PREFIX = 'preset:'


def preset_vocab_size(preset: str) -> int:
    """The vocabulary a preset model is built with: the real one, or the tiny tokenizer's for 'tiny'."""
    from ..datasets.tiny_tokenizer import ADDED_TOKENS
    return 964 + len(ADDED_TOKENS) if preset == 'tiny' else REAL_VOCAB_SIZE


def preset_token_id(token: str, vocab_size: int) -> int:
    """Id of an added token in the real layout: the added tokens are the last ids of the vocabulary."""
    from ..datasets.tiny_tokenizer import ADDED_TOKENS
    names = [t for t, _ in ADDED_TOKENS]
    if token not in names:
        raise ValueError(f'{token!r} is not one of the Sa2VA added tokens')
    return vocab_size - len(names) + names.index(token)

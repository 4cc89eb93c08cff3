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
    'qwen2.5-0.5b': dict(
        hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, intermediate_size=4864
    ),
    'qwen2.5-1.5b': dict(
        hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960
    ),
    'qwen2.5-3b': dict(
        hidden_size=2048, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2, intermediate_size=11008
    ),
    'qwen2.5-7b': dict(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, intermediate_size=18944
    ),
    'qwen2.5-14b': dict(
        hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8, intermediate_size=13824
    ),
    'tiny': dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128
    ),
}

# The tiny SAM2 of the golden fixture: Hiera with 16-dim first stage, 32-dim FPN.
SAM2_TINY: dict[str, Any] = {
    'trunk': {
        'embed_dim': 16,
        'num_heads': 2,
        'stages': [1, 2, 3, 1],
        'global_att_blocks': [4],
        'window_pos_embed_bkg_spatial_size': [7, 7],
        'window_spec': [8, 4, 16, 8],
        'q_pool': 3,
        'q_stride': [2, 2],
        'dim_mul': 2.0,
        'head_mul': 2.0,
    },
    'neck': {
        'd_model': 32,
        'backbone_channel_list': [128, 64, 32, 16],
        'fpn_top_down_levels': [2, 3],
        'kernel_size': 1,
        'stride': 1,
        'padding': 0,
    },
    # the golden fixture's tiny SAM2 video memory (read by models/video.py)
    'memory_attention': {
        'd_model': 32,
        'num_layers': 2,
        'layer': {'dim_feedforward': 64, 'dropout': 0.1, 'activation': 'relu'},
        'self_attention': {'rope_theta': 10000.0, 'num_heads': 1, 'downsample_rate': 1},
        'cross_attention': {'kv_in_dim': 8},
    },
    'memory_encoder': {
        'out_dim': 8,
        'in_dim': 32,
        'mask_downsampler': {'embed_dim': 32, 'kernel_size': 3, 'stride': 2, 'padding': 1, 'total_stride': 16},
        'fuser': {
            'num_layers': 2,
            'layer': {'dim': 32, 'kernel_size': 7, 'padding': 3, 'layer_scale_init_value': 1e-6},
        },
    },
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


# ---- Qwen-VL families (Sa2VAChatConfigQwen) ---------------------------------------------------
# Shapes of the public config.json of the base checkpoints (Qwen/Qwen2.5-VL-3B-Instruct,
# -7B-Instruct, Qwen/Qwen3-VL-4B-Instruct); the Sa2VA export keeps them and sets the vocabulary to
# the tokenizer's length and tie_word_embeddings to false.
QWEN2_5_VL_VISION = dict(
    depth=32,
    hidden_size=1280,
    intermediate_size=3420,
    num_heads=16,
    fullatt_block_indexes=[7, 15, 23, 31],
    window_size=112,
    patch_size=14,
)
QWEN3_VL_VISION = dict(
    depth=24,
    hidden_size=1024,
    intermediate_size=4096,
    num_heads=16,
    deepstack_visual_indexes=[5, 11, 17],
    num_position_embeddings=2304,
    patch_size=16,
)
QWEN_VL_TEXT = {
    'qwen2.5-vl-3b': dict(
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        mrope_section=[16, 24, 24],
    ),
    'qwen2.5-vl-7b': dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        mrope_section=[16, 24, 24],
    ),
    'qwen3-vl-4b': dict(
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        mrope_section=[24, 20, 20],
    ),
    # tiny test models: head_dim 16, so the M-RoPE sections sum to 8
    'tiny-qwen2.5-vl': dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        mrope_section=[2, 3, 3],
    ),
    'tiny-qwen3-vl': dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        mrope_section=[3, 3, 2],
    ),
}
TINY_QWEN2_5_VL_VISION = dict(
    depth=2,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    fullatt_block_indexes=[1],
    window_size=112,
    patch_size=14,
)
TINY_QWEN3_VL_VISION = dict(
    depth=2,
    hidden_size=32,
    intermediate_size=64,
    num_heads=2,
    deepstack_visual_indexes=[0],
    num_position_embeddings=2304,
    patch_size=16,
)
QWEN_PRESETS = {
    # name: (family, vision, text, sam2)
    'tiny-qwen2_5_vl': ('qwen2_5_vl', TINY_QWEN2_5_VL_VISION, 'tiny-qwen2.5-vl', SAM2_TINY),
    'tiny-qwen3_vl': ('qwen3_vl', TINY_QWEN3_VL_VISION, 'tiny-qwen3-vl', SAM2_TINY),
    'sa2va-qwen25vl-3b': ('qwen2_5_vl', QWEN2_5_VL_VISION, 'qwen2.5-vl-3b', SAM2_HIERA_LARGE),
    'sa2va-qwen25vl-7b': ('qwen2_5_vl', QWEN2_5_VL_VISION, 'qwen2.5-vl-7b', SAM2_HIERA_LARGE),
    'sa2va-qwen3vl-4b': ('qwen3_vl', QWEN3_VL_VISION, 'qwen3-vl-4b', SAM2_HIERA_LARGE),
}
# The tiny preset of each family (tools/make_tiny_sa2va.py --family).
TINY_PRESET = {'internvl': 'tiny', 'qwen2_5_vl': 'tiny-qwen2_5_vl', 'qwen3_vl': 'tiny-qwen3_vl'}
# Real vocabulary sizes (len(tokenizer)) of the Qwen-VL Sa2VA exports.
QWEN_REAL_VOCAB_SIZE = {'qwen2_5_vl': 151670, 'qwen3_vl': 151674}
# config.json token-id entries: the added tokens' ids in the family layout (151655 for
# <|image_pad|> at the real vocabulary sizes)
QWEN_TOKEN_KEYS = dict(
    image_token_id='<|image_pad|>',
    video_token_id='<|video_pad|>',
    vision_start_token_id='<|vision_start|>',
    vision_end_token_id='<|vision_end|>',
)
QWEN_AUTO_MAP = {
    'AutoConfig': 'configuration_sa2va_chat.Sa2VAChatConfigQwen',
    'AutoModel': 'modeling_sa2va_qwen.Sa2VAChatModelQwen',
    'AutoModelForCausalLM': 'modeling_sa2va_qwen.Sa2VAChatModelQwen',
}


def preset_family(preset: str) -> str:
    """The MLLM family of a preset."""
    if preset in QWEN_PRESETS:
        return QWEN_PRESETS[preset][0]
    if preset in PRESETS:
        return 'internvl'
    raise ValueError(f'unknown preset {preset!r}; known: {sorted(PRESETS) + sorted(QWEN_PRESETS)}')


def _qwen_official_config(preset: str, vocab_size: int, dtype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nested config.json an official Sa2VA-Qwen export carries (Qwen3-VL form for both families)."""
    family, vision, text_name, sam2 = QWEN_PRESETS[preset]
    text = dict(QWEN_VL_TEXT[text_name])
    section = text.pop('mrope_section')
    vision = dict(
        vision,
        in_channels=3,
        spatial_merge_size=2,
        temporal_patch_size=2,
        out_hidden_size=text['hidden_size'],
        initializer_range=0.02,
    )
    ids = {key: preset_token_id(token, vocab_size, family) for key, token in QWEN_TOKEN_KEYS.items()}
    text_config = dict(
        bos_token_id=preset_token_id('<|endoftext|>', vocab_size, family),
        eos_token_id=preset_token_id('<|im_end|>', vocab_size, family),
        hidden_act='silu',
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        vocab_size=vocab_size,
        dtype=dtype,
        use_cache=True,
        attention_dropout=0.0,
        **text,
    )
    if family == 'qwen2_5_vl':
        vision.update(model_type='qwen2_5_vl', hidden_act='silu', tokens_per_second=2)
        text_config.update(
            model_type='qwen2_5_vl_text',
            max_position_embeddings=128000,
            rope_theta=1000000.0,
            rope_scaling={'mrope_section': section, 'rope_type': 'default', 'type': 'default'},
            sliding_window=None,
            use_sliding_window=False,
            max_window_layers=70,
        )
    else:
        vision.update(model_type='qwen3_vl', hidden_act='gelu_pytorch_tanh')
        text_config.update(
            model_type='qwen3_vl_text',
            max_position_embeddings=262144,
            rope_theta=5000000,
            rope_scaling={'mrope_interleaved': True, 'mrope_section': section, 'rope_type': 'default'},
            attention_bias=False,
        )
    config = dict(
        architectures=['Sa2VAChatModelQwen'],
        auto_map=dict(QWEN_AUTO_MAP),
        model_type='sa2va_chat',
        template='qwen_chat',
        tie_word_embeddings=False,
        dtype=dtype,
        transformers_version='4.57.6',
        text_config=text_config,
        vision_config=vision,
        **ids,
    )
    return config, copy.deepcopy(sam2)


def official_config(preset: str, vocab_size: int, dtype: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config.json content, sam2 description) for a preset, in the official form."""
    if preset in QWEN_PRESETS:
        return _qwen_official_config(preset, vocab_size, dtype)
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; known: {sorted(PRESETS) + sorted(QWEN_PRESETS)}')
    vit, llm_name, sam2, tie = PRESETS[preset]
    llm = dict(QWEN[llm_name])
    vision_config = dict(
        architectures=['InternVisionModel'],
        model_type='intern_vit_6b',
        attention_dropout=0.0,
        drop_path_rate=0.0,
        dropout=0.0,
        hidden_act='gelu',
        image_size=448,
        patch_size=14,
        num_channels=3,
        initializer_factor=1.0,
        initializer_range=0.02,
        layer_norm_eps=1e-6,
        norm_type='layer_norm',
        qk_normalization=False,
        qkv_bias=True,
        use_flash_attn=False,
        **vit,
    )
    llm_config = dict(
        architectures=['Qwen2ForCausalLM'],
        model_type='qwen2',
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151645,
        hidden_act='silu',
        initializer_range=0.02,
        max_position_embeddings=32768,
        max_window_layers=llm['num_hidden_layers'],
        rms_norm_eps=1e-6,
        rope_scaling=None,
        rope_theta=1000000.0,
        sliding_window=None,
        use_cache=True,
        use_sliding_window=False,
        tie_word_embeddings=tie,
        vocab_size=vocab_size,
        dtype=dtype,
        **llm,
    )
    config = dict(
        architectures=['Sa2VAChatModel'],
        auto_map={
            'AutoConfig': 'configuration_sa2va_chat.Sa2VAChatConfig',
            'AutoModel': 'modeling_sa2va_chat.Sa2VAChatModel',
            'AutoModelForCausalLM': 'modeling_sa2va_chat.Sa2VAChatModel',
        },
        model_type='sa2va_chat',
        template='qwen_chat',
        downsample_ratio=0.5,
        dynamic_image_size=True,
        force_image_size=448,
        hidden_size=llm['hidden_size'],
        min_dynamic_patch=1,
        max_dynamic_patch=12,
        pad2square=False,
        ps_version='v2',
        select_layer=-1,
        use_thumbnail=True,
        use_backbone_lora=0,
        use_llm_lora=0,
        tie_word_embeddings=tie,
        dtype=dtype,
        output_attentions=False,
        transformers_version=None,
        vision_config=vision_config,
        llm_config=llm_config,
    )
    return config, copy.deepcopy(sam2)


# Real Sa2VA-InternVL vocabulary: Qwen2.5's 151,643 base tokens + the 36 added tokens (ids
# 151643..151678), in the order of ``datasets/tiny_tokenizer.ADDED_TOKENS``. A model built from a
# preset (no checkpoint directory, no tokenizer) takes its special-token ids from this layout.
REAL_VOCAB_SIZE = 151679
PRESET_PREFIX = 'preset:'


def preset_vocab_size(preset: str) -> int:
    """The vocabulary a preset model is built with: the real one, or the tiny tokenizer's for tiny presets."""
    from ..datasets.tiny_tokenizer import added_tokens_for

    family = preset_family(preset)
    if preset == TINY_PRESET[family]:
        return 964 + len(added_tokens_for(family))
    return QWEN_REAL_VOCAB_SIZE.get(family, REAL_VOCAB_SIZE)


def preset_token_id(token: str, vocab_size: int, family: str = 'internvl') -> int:
    """Id of an added token in the family's real layout: the added tokens are the last ids of the vocabulary."""
    from ..datasets.tiny_tokenizer import added_tokens_for

    names = [t for t, _ in added_tokens_for(family)]
    if token not in names:
        raise ValueError(f'{token!r} is not one of the Sa2VA added tokens')
    return vocab_size - len(names) + names.index(token)

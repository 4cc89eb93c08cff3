"""Writing random, seeded Sa2VA checkpoints in the official layout (tests, demo, benchmarks)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from .checkpoint import build_modules, official_state_dict, save_safetensors_sharded
from .configuration import read_architecture
from .presets import TINY_PRESET, official_config, preset_family

DTYPE_NAMES = {'float32': torch.float32, 'bfloat16': torch.bfloat16}


TOKENIZER_FILES = (
    'vocab.json',
    'merges.txt',
    'tokenizer.json',
    'tokenizer_config.json',
    'added_tokens.json',
    'special_tokens_map.json',
)


def write_tokenizer(out_dir: Path, tokenizer_from: Path | None = None, family: str = 'internvl') -> int:
    """A tokenizer carrying the Sa2VA special tokens of ``family``; returns its length.

    By default the project's own small tokenizer; ``tokenizer_from`` gives a real one instead
    (e.g. a Sa2VA checkpoint's, for real vocabulary sizes): copied when its added tokens are the
    family's, otherwise rebuilt from its vocab.json + merges.txt (the Qwen2.5 BPE every family
    shares) with the family's added tokens. The added tokens must end up where the preset's model
    expects them (``presets.preset_token_id``), or this raises naming the folder.
    """
    from ..datasets.fast_tokenizer import load_fast_tokenizer
    from ..datasets.tiny_tokenizer import added_tokens_for, build_tiny_tokenizer, family_tokenizer_from_bpe

    if tokenizer_from is None:
        build_tiny_tokenizer(out_dir, family=family)
    elif _added_token_names(Path(tokenizer_from)) == {t for t, _ in added_tokens_for(family)}:
        for name in TOKENIZER_FILES:
            if (Path(tokenizer_from) / name).is_file():
                shutil.copyfile(Path(tokenizer_from) / name, out_dir / name)
    else:
        family_tokenizer_from_bpe(tokenizer_from, out_dir, family)
    tokenizer = load_fast_tokenizer(out_dir)
    check_token_layout(tokenizer, family, tokenizer_from or out_dir)
    return len(tokenizer)


def _added_token_names(folder: Path) -> set[str]:
    """The tokens of a tokenizer folder's added_tokens.json (empty without one)."""
    path = folder / 'added_tokens.json'
    return set(json.loads(path.read_text())) if path.is_file() else set()


def check_token_layout(tokenizer, family: str, source: Path | str) -> None:
    """The family's added tokens must be the tokenizer's last ids, in the real order."""
    from ..datasets.tiny_tokenizer import added_tokens_for
    from .presets import preset_token_id

    n = len(tokenizer)
    for token, _ in added_tokens_for(family):
        got, expected = tokenizer.convert_tokens_to_ids(token), preset_token_id(token, n, family)
        if got != expected:
            raise ValueError(
                f'{source}: tokenizer gives {token} id {got}, a {family} Sa2VA tokenizer of '
                f'{n} tokens has it at {expected}; pass a tokenizer of that family, or one whose '
                'vocab.json + merges.txt are the Qwen2.5 BPE'
            )


def write_preset_inputs(out_dir: str | Path, preset: str, tokenizer_from: str | Path | None = None) -> Path:
    """A ``preset`` checkpoint directory without weights: tokenizer, ``config.json``, ``sam2_config.json``
    (and ``preprocessor_config.json`` for the Qwen-VL families).

    What a data set needs from a checkpoint (template, tiling / image processor, special tokens) while the model
    itself is built as ``model_path='preset:NAME'`` (random weights drawn on the device).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    family = preset_family(preset)
    vocab_size = write_tokenizer(out_dir, Path(tokenizer_from) if tokenizer_from else None, family=family)
    config, sam2 = official_config(preset, vocab_size=vocab_size, dtype='bfloat16')
    (out_dir / 'config.json').write_text(json.dumps(config, indent=2))
    (out_dir / 'sam2_config.json').write_text(json.dumps(sam2, indent=2))
    if family != 'internvl':
        _write_qwen_processor_config(out_dir, config)
    return out_dir


def write_random_sa2va(
    out_dir: str | Path,
    preset: str = 'tiny',
    seed: int = 0,
    dtype: str = 'float32',
    tokenizer_from: str | Path | None = None,
    video_memory: bool = False,
) -> Path:
    """A random ``preset`` Sa2VA checkpoint directory at ``out_dir``, loadable by ``load_sa2va``.

    ``video_memory`` also writes SAM2's video-memory tensors (as every official checkpoint holds
    them), so that ``models/video.py`` can propagate masks through a video.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    family = preset_family(preset)
    vocab_size = write_tokenizer(out_dir, Path(tokenizer_from) if tokenizer_from else None, family=family)
    config, sam2 = official_config(preset, vocab_size=vocab_size, dtype=dtype)
    (out_dir / 'config.json').write_text(json.dumps(config, indent=2))
    (out_dir / 'sam2_config.json').write_text(json.dumps(sam2, indent=2))
    torch.manual_seed(seed)
    modules = build_modules(read_architecture(out_dir), DTYPE_NAMES[dtype], init_weights=True)
    # transformers initialises SAM2's random-Fourier matrix to N(0, 1) and the layer scales to
    # constants; draw the layer scales too, so that a wrongly mapped one changes outputs.
    if family != 'internvl':
        _write_qwen_processor_config(out_dir, config)
    if preset == TINY_PRESET[family]:
        # transformers' N(0, 0.02) init leaves a tiny network's activations near zero, which a
        # few hundred steps of fine-tuning cannot climb out of; PyTorch's fan-in scaled init keeps
        # them O(1), so the tiny model learns the way a pretrained one would.
        for module in modules.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
    for layer in modules.vision_model.encoder.layer if family == 'internvl' else []:
        torch.nn.init.normal_(layer.lambda_1, 1.0, 0.02)
        torch.nn.init.normal_(layer.lambda_2, 1.0, 0.02)
    passthrough = _random_video_memory(modules, preset) if video_memory else None
    save_safetensors_sharded(official_state_dict(modules, passthrough), out_dir)
    return out_dir


def _random_video_memory(modules, preset: str) -> dict[str, torch.Tensor]:
    """Random SAM2 video-memory tensors under official names (drawn after the other weights)."""
    from .video import SAM2VideoMemory, memory_config, memory_official_state

    memory = SAM2VideoMemory(memory_config(modules.arch), modules.arch.sam2_hidden_size)
    for module in memory.modules():
        if preset == 'tiny' and isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)):
            module.reset_parameters()
    # SAM2 draws these with std 0.02; transformers leaves them zero, which would hide a mix-up
    for param in (
        memory.memory_temporal_positional_encoding,
        memory.no_object_pointer,
        memory.no_memory_positional_encoding,
    ):
        torch.nn.init.normal_(param, 0.0, 0.02)
    return memory_official_state(memory)


def _write_qwen_processor_config(out_dir: Path, config: dict) -> None:
    """The base checkpoint's ``preprocessor_config.json`` (the fast image processor's settings)."""
    from ..datasets.qwen_image_processing import FAMILY_DEFAULTS

    family = 'qwen3_vl' if config['vision_config']['model_type'] == 'qwen3_vl' else 'qwen2_5_vl'
    s = FAMILY_DEFAULTS[family]
    (out_dir / 'preprocessor_config.json').write_text(
        json.dumps(
            dict(
                image_processor_type='Qwen2VLImageProcessorFast',
                do_convert_rgb=True,
                do_normalize=True,
                do_rescale=True,
                do_resize=True,
                image_mean=list(s.image_mean),
                image_std=list(s.image_std),
                merge_size=s.merge_size,
                patch_size=s.patch_size,
                temporal_patch_size=s.temporal_patch_size,
                resample=3,
                rescale_factor=1 / 255,
                min_pixels=s.min_pixels,
                max_pixels=s.max_pixels,
            ),
            indent=2,
        )
        + '\n'
    )

"""Shared test helpers: where ../shared's fixtures are, and cached tokenizer folders.

Cached per test process, because building the real 151k-token tokenizer takes seconds.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    """``tools/NAME.py`` as a module (the tools are scripts, not a package), freshly executed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SHARED = REPO_ROOT.parent / 'shared'
GOLDEN = SHARED / 'fixtures' / 'golden'
GOLDEN_MODEL = GOLDEN / 'sa2va_tiny_internvl'
GOLDEN_REF = GOLDEN / 'reference'
LAYOUT = SHARED / 'fixtures' / 'sa2va_internvl3_8b_layout'


def require(path: Path, what: str) -> Path:
    """Skip the test, saying why, when a fixture from ../shared is absent (a user's clone has none)."""
    if not path.exists():
        pytest.skip(f'{what} not found at {path}: it lives in ../shared beside the checkout, which this clone lacks')
    return path


requires_golden = pytest.mark.skipif(
    not (GOLDEN_REF / 'inputs.safetensors').is_file(),
    reason=f'golden fixture not found at {GOLDEN} (../shared is absent in this checkout)',
)
requires_real_tokenizer = pytest.mark.skipif(
    not (LAYOUT / 'vocab.json').is_file() or not (GOLDEN_MODEL / 'config.json').is_file(),
    reason=f'real Sa2VA tokenizer not found at {LAYOUT} (../shared is absent in this checkout)',
)

# Checkpoint config.json entries the data side reads; the values of Sa2VA-InternVL3.
TINY_CONFIG = {
    'template': 'qwen_chat',
    'force_image_size': 448,
    'min_dynamic_patch': 1,
    'max_dynamic_patch': 12,
    'use_thumbnail': True,
    'dynamic_image_size': True,
    'downsample_ratio': 0.5,
    'vision_config': {'patch_size': 14, 'image_size': 448},
}


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def tiny_checkpoint_dir() -> Path:
    """A folder with the self-made tiny tokenizer and a config.json (no ../shared needed)."""
    from projects.sa2va_vessel.datasets.tiny_tokenizer import build_tiny_tokenizer

    out = _tmpdir('tiny_ckpt_')
    build_tiny_tokenizer(out)
    (out / 'config.json').write_text(json.dumps(TINY_CONFIG, indent=2))
    return out


@functools.lru_cache(maxsize=None)
def real_checkpoint_dir() -> Path:
    """The golden model's tokenizer files + config.json with the real vocab/merges linked in.

    After the first (slow) load, tokenizer.json is saved there so later loads are fast.
    """
    from transformers import AutoTokenizer

    out = _tmpdir('real_ckpt_')
    for name in ('added_tokens.json', 'special_tokens_map.json', 'tokenizer_config.json', 'config.json'):
        shutil.copy(GOLDEN_MODEL / name, out / name)
    for name in ('vocab.json', 'merges.txt'):
        os.symlink(LAYOUT / name, out / name)
    AutoTokenizer.from_pretrained(str(out)).save_pretrained(str(out))
    return out


@functools.lru_cache(maxsize=None)
def real_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(real_checkpoint_dir()))


@functools.lru_cache(maxsize=None)
def tiny_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_checkpoint_dir()))


# The Qwen-VL golden fixtures (official Sa2VAChatModelQwen code): family -> (fixture root, model dir).
QWEN_GOLDEN = {
    'qwen2_5_vl': (SHARED / 'fixtures' / 'golden_qwen25vl', 'sa2va_tiny_qwen25vl'),
    'qwen3_vl': (SHARED / 'fixtures' / 'golden_qwen3vl', 'sa2va_tiny_qwen3vl'),
}


@functools.lru_cache(maxsize=None)
def qwen_golden_checkpoint_dir(family: str) -> Path:
    """The Qwen-VL golden model with the shared vocab/merges linked in (its README, step 0.1).

    Every file of the model directory is linked into a temporary folder; after the first (slow)
    tokenizer conversion, tokenizer.json is saved there so later loads are fast.
    """
    from transformers import AutoTokenizer

    root, name = QWEN_GOLDEN[family]
    require(root / name / 'config.json', f'golden {family} Sa2VA fixture')
    require(LAYOUT / 'vocab.json', 'shared Qwen2.5 vocabulary')
    out = _tmpdir(f'golden_{family}_')
    for file in (root / name).iterdir():
        os.symlink(file, out / file.name)
    for file in ('vocab.json', 'merges.txt'):
        os.symlink(LAYOUT / file, out / file)
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    tokenizer.save_pretrained(str(out / '_saved'))
    shutil.copy(out / '_saved' / 'tokenizer.json', out / 'tokenizer.json')
    return out


def tiny_training_model(checkpoint: Path, **kwargs):
    """A Sa2VAVesselModel on a tiny checkpoint as the learning tests build it: fp32, LoRA r8, seeded."""
    import torch

    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    torch.manual_seed(0)
    options = dict(
        dtype='float32', lora=dict(r=8, alpha=16, dropout=0.0), gradient_checkpointing=False, sam2_feature_cache_size=16
    )
    options.update(kwargs)
    return Sa2VAVesselModel(str(checkpoint), **options)

"""Export on a real key layout: the golden fixture (official Sa2VAChatModel weights, 425 keys,
SAM2 video-memory tensors included) as the base checkpoint.

Skipped with a reason when ../shared (the fixtures) is absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from projects.sa2va_vessel.models.checkpoint import load_sa2va
from projects.sa2va_vessel.models.export import build_model_from_config, export_full, merged_state_dict
from projects.sa2va_vessel.models.name_map import is_passthrough
from tests._data_support import GOLDEN, LAYOUT, require
from tests.test_export import make_trained_checkpoint, write_config

N_GOLDEN_KEYS = 425


@pytest.fixture(scope='module')
def golden_base(tmp_path_factory) -> Path:
    """A copy of the golden model with the real vocab.json/merges.txt next to it (its README says so)."""
    src = require(GOLDEN / 'sa2va_tiny_internvl', 'golden Sa2VA fixture')
    require(LAYOUT / 'vocab.json', '8B layout fixture (real tokenizer)')
    base = tmp_path_factory.mktemp('golden') / 'sa2va_tiny_internvl'
    shutil.copytree(src, base)
    for name in ('vocab.json', 'merges.txt'):
        shutil.copyfile(LAYOUT / name, base / name)
    for path in base.iterdir():
        path.chmod(0o644)
    return base


def test_untrained_export_is_the_base_bit_for_bit(golden_base: Path, tmp_path: Path) -> None:
    """Zero LoRA and untouched token rows: an fp32 export reproduces the official file exactly."""
    model = build_model_from_config(write_config(tmp_path / 'cfg.py', golden_base))
    export_full(model, tmp_path / 'out', dtype=torch.float32)
    base, exported = load_file(golden_base / 'model.safetensors'), load_file(tmp_path / 'out' / 'model.safetensors')
    assert len(base) == N_GOLDEN_KEYS and set(exported) == set(base)
    for key in base:
        assert torch.equal(exported[key], base[key]), key


def test_trained_export_keeps_the_official_layout(golden_base: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / 'cfg.py', golden_base)
    trained, _ = make_trained_checkpoint(config, 3, tmp_path / 'trained.pth')
    for dtype in (torch.float32, torch.bfloat16):
        out = tmp_path / f'out_{dtype}'
        export_full(trained, out, dtype=dtype)
        base, exported = load_file(golden_base / 'model.safetensors'), load_file(out / 'model.safetensors')
        assert set(exported) == set(base) and len(exported) == N_GOLDEN_KEYS
        passthrough = [k for k in base if is_passthrough(k)]
        assert passthrough, 'the golden layout holds SAM2 memory tensors'
        for key in passthrough:  # written back from the base, cast to the export dtype
            assert torch.equal(exported[key], base[key].to(dtype)), key
        key = 'language_model.model.layers.0.mlp.up_proj.weight'
        assert not torch.equal(exported[key].float(), base[key])
        loaded, report = load_sa2va(out)
        assert report.n_tensors == N_GOLDEN_KEYS
        merged = merged_state_dict(trained)
        for name, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, merged[name].to(dtype)), name

"""Qwen-VL presets: the published shapes (checked on the meta device) and benchmark batches."""
from __future__ import annotations

import pytest
import torch

from projects.sa2va_vessel.benchmark.synthetic import make_batch
from projects.sa2va_vessel.models.checkpoint import build_preset
from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

# Parameter counts of the official Sa2VAChatModelQwen module trees at the published base sizes
# (golden_qwen25vl / golden_qwen3vl README, section 2.2): visual, text model, lm_head, text_hidden_fcs.
OFFICIAL_COUNTS = {
    'sa2va-qwen25vl-3b': (668_684_288, 3_085_393_920, 310_620_160, 4_720_896),
    'sa2va-qwen25vl-7b': (676_550_144, 7_069_207_040, 543_585_280, 13_766_400),
    'sa2va-qwen3vl-4b': (415_347_712, 4_021_797_376, 388_285_440, 7_211_776),
}


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize('preset', sorted(OFFICIAL_COUNTS))
def test_preset_has_the_published_shapes(preset: str) -> None:
    modules, _ = build_preset(preset, torch.bfloat16, device='meta')
    counts = (_count(modules.visual), _count(modules.language_model.model), _count(modules.language_model.lm_head),
              _count(modules.text_hidden_fcs))
    assert counts == OFFICIAL_COUNTS[preset]
    assert modules.arch.mllm.image_token_id == 151655


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_benchmark_batch_trains_a_preset_model(preset: str) -> None:
    model = Sa2VAVesselModel('preset:' + preset, dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0),
                             gradient_checkpointing=False)
    batch = make_batch(model, 2, (256, 256), 'cpu')
    data = batch['data']
    assert data['position_ids'].shape == (3,) + tuple(data['input_ids'].shape)
    assert int((data['input_ids'] == model.img_context_id).sum()) == 2 * batch['meta']['image_tokens']
    losses = model(data, batch['data_samples'], mode='loss')
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if 'lora_' in n)

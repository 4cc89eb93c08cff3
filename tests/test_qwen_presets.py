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
    counts = (
        _count(modules.visual),
        _count(modules.language_model.model),
        _count(modules.language_model.lm_head),
        _count(modules.text_hidden_fcs),
    )
    assert counts == OFFICIAL_COUNTS[preset]
    assert modules.arch.mllm.image_token_id == 151655


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_benchmark_batch_trains_a_preset_model(preset: str) -> None:
    model = Sa2VAVesselModel(
        'preset:' + preset, dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False
    )
    batch = make_batch(model, 2, (256, 256), 'cpu')
    data = batch['data']
    assert data['position_ids'].shape == (3,) + tuple(data['input_ids'].shape)
    assert int((data['input_ids'] == model.img_context_id).sum()) == 2 * batch['meta']['image_tokens']
    losses = model(data, batch['data_samples'], mode='loss')
    sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters() if 'lora_' in n)


@pytest.mark.parametrize('family', ['qwen2_5_vl', 'qwen3_vl'])
def test_benchmark_tokenizer_of_a_family_from_the_shared_bpe(family: str, tmp_path) -> None:
    """The end-to-end benchmark's tokenizer for a Qwen-VL preset, built from the InternVL layout's
    vocab.json + merges.txt: the official tokenizer's length and the fixture's training ids exactly."""
    from safetensors.torch import load_file

    from projects.sa2va_vessel.datasets.conversation import encode_turn, make_question, qwen_image_token_string
    from projects.sa2va_vessel.datasets.fast_tokenizer import load_fast_tokenizer
    from projects.sa2va_vessel.models.presets import QWEN_REAL_VOCAB_SIZE
    from projects.sa2va_vessel.models.random_checkpoint import write_tokenizer
    from tests._data_support import LAYOUT, QWEN_GOLDEN, require

    require(LAYOUT / 'vocab.json', 'shared Qwen2.5 vocabulary')
    ref = load_file(require(QWEN_GOLDEN[family][0], f'golden {family} fixture') / 'reference' / 'inputs.safetensors')
    assert write_tokenizer(tmp_path, LAYOUT, family=family) == QWEN_REAL_VOCAB_SIZE[family]
    tokenizer = load_fast_tokenizer(tmp_path)
    n_tokens = int(ref['train_image_grid_thw'].prod()) // 4
    turn = encode_turn(
        tokenizer,
        make_question('Please segment the blood vessel.'),
        'Sure, [SEG].',
        n_tiles=1,
        template='qwen_chat',
        image_tokens=qwen_image_token_string(n_tokens),
    )
    assert turn.input_ids == ref['train_input_ids'][0].tolist()
    assert turn.labels == ref['train_labels'][0].tolist()


def test_benchmark_tokenizer_of_another_family_is_refused(tmp_path) -> None:
    """A folder whose added tokens sit elsewhere than the preset's model expects is named."""
    from transformers import AutoTokenizer

    from projects.sa2va_vessel.datasets.tiny_tokenizer import build_tiny_tokenizer
    from projects.sa2va_vessel.models.random_checkpoint import check_token_layout

    build_tiny_tokenizer(tmp_path, family='internvl')
    with pytest.raises(ValueError, match='tokenizer gives .* a qwen3_vl Sa2VA tokenizer of 1000 tokens'):
        check_token_layout(AutoTokenizer.from_pretrained(str(tmp_path)), 'qwen3_vl', tmp_path)

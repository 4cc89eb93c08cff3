"""The checkpoint formats module: what a path is, strict loading, best record, peft names, threshold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.evaluation.threshold import resolve_threshold
from projects.sa2va_vessel.models.checkpoint import CheckpointError
from projects.sa2va_vessel.models.peft_names import PEFT_PREFIX, PeftNameError, from_peft_key, to_peft_key
from projects.sa2va_vessel.models.training_checkpoint import (
    BEST_RECORD,
    DEEPSPEED_MODEL_STATES,
    LAST_CHECKPOINT,
    PROJECT_KEY,
    checkpoint_kind,
    fill_frozen_from_model,
    load_checkpoint,
    read_best_record,
    read_training_state,
    trainable_only_state,
    write_best_record,
)
from tests._data_support import tiny_training_model


@pytest.fixture(scope='module')
def trained(tiny_checkpoint: Path):
    """A tiny model whose trainable weights differ from a freshly built one."""
    model = tiny_training_model(tiny_checkpoint)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    return model


def _trainables(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_loaded(model, expected: dict[str, torch.Tensor]) -> None:
    got = _trainables(model)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(got[name], value, atol=1e-6, rtol=0), name


def test_every_format_is_recognised_and_loads_strictly(trained, tiny_checkpoint, tmp_path) -> None:
    from projects.sa2va_vessel.models.export import export_adapter

    want = _trainables(trained)
    state = trainable_only_state(trained, trained.state_dict())
    assert set(want) <= set(state) and len(state) < len(trained.state_dict())  # frozen weights dropped

    pth = tmp_path / 'iter_3.pth'
    torch.save({'state_dict': state, 'meta': {'trainable_only': True}}, pth)
    ds_dir = tmp_path / 'iter_4.pth'
    ds_dir.mkdir()
    torch.save({'module': state}, ds_dir / DEEPSPEED_MODEL_STATES)
    (tmp_path / LAST_CHECKPOINT).write_text(str(ds_dir))
    adapter = tmp_path / 'adapter'
    export_adapter(trained, adapter, dtype=torch.float32)
    kinds = {p: checkpoint_kind(p) for p in (tiny_checkpoint, pth, ds_dir, tmp_path, adapter)}
    assert list(kinds.values()) == ['export', 'file', 'deepspeed', 'deepspeed', 'adapter']
    assert set(read_training_state(tmp_path)[0]) == set(state)  # a work dir: through last_checkpoint

    for path in (pth, ds_dir, adapter):
        fresh = tiny_training_model(tiny_checkpoint)
        kind, loaded = load_checkpoint(fresh, path)
        assert kind == kinds[path] and set(want) <= set(loaded)
        _assert_loaded(fresh, want)
    with pytest.raises(CheckpointError, match='official-layout model directory'):
        load_checkpoint(fresh, tiny_checkpoint)

    broken = dict(state)
    broken.pop(next(iter(want)))
    torch.save({'state_dict': broken}, pth)
    with pytest.raises(CheckpointError, match='1 trainable parameters of the model missing'):
        load_checkpoint(tiny_training_model(tiny_checkpoint), pth)


def test_resume_fills_the_frozen_weights_from_the_model(trained) -> None:
    state = trainable_only_state(trained, trained.state_dict())
    fill_frozen_from_model(trained, state)
    assert set(state) == set(trained.state_dict())
    lacking = trainable_only_state(trained, trained.state_dict())
    del lacking[next(n for n, p in trained.named_parameters() if p.requires_grad)]
    with pytest.raises(CheckpointError, match='Checkpoint lacks 1 trainable parameter'):
        fill_frozen_from_model(trained, lacking, 'resume')


def test_peft_keys_round_trip_onto_the_model_parameters(trained) -> None:
    from peft import get_peft_model_state_dict

    keys = get_peft_model_state_dict(trained.sa2va.language_model)
    params = dict(trained.named_parameters())
    assert keys and all(from_peft_key(to_peft_key(k)) in params for k in keys)
    assert all(to_peft_key(k).startswith(PEFT_PREFIX) for k in keys)
    with pytest.raises(PeftNameError, match='lacks the peft prefix'):
        from_peft_key('model.layers.0.self_attn.q_proj.lora_A.weight')
    with pytest.raises(PeftNameError, match='not a LoRA A/B weight'):
        from_peft_key(PEFT_PREFIX + 'model.norm.weight')


def test_best_record_and_threshold_resolution(tmp_path) -> None:
    best, other = tmp_path / 'best_vessel_best_dice_iter_2.pth', tmp_path / 'iter_4.pth'
    assert resolve_threshold(best).source == 'default' and resolve_threshold(best).value == 0.5
    write_best_record(tmp_path, {'checkpoint': best.name, 'threshold': 0.35})
    assert (tmp_path / BEST_RECORD).is_file() and not list(tmp_path.glob('*.tmp'))
    assert read_best_record(best)['threshold'] == 0.35 and read_best_record(other) is None
    assert (resolve_threshold(best).value, resolve_threshold(best).source) == (0.35, 'best_checkpoint.json')
    assert resolve_threshold(best, 0.6).source == 'command line' and resolve_threshold(best, 0.6).value == 0.6
    # the record describes another checkpoint: the caller's default, never its threshold
    assert resolve_threshold(other, default=None, default_source='config').value is None
    export = tmp_path / 'export'
    export.mkdir()
    (export / 'config.json').write_text(json.dumps({PROJECT_KEY: {'threshold': 0.42}}))
    assert (resolve_threshold(export).value, resolve_threshold(export).source) == (0.42, 'export config.json')

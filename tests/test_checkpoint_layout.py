"""Official-layout checkpoints: every key accounted for, every failure named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from projects.sa2va_vessel.models.checkpoint import CheckpointError, load_sa2va, official_state_dict
from projects.sa2va_vessel.models.configuration import CheckpointConfigError, read_architecture
from projects.sa2va_vessel.models.name_map import PASSTHROUGH_PREFIXES, official_to_ours, ours_to_official
from projects.sa2va_vessel.models.presets import official_config
from projects.sa2va_vessel.models.sa2va import Sa2VAModules
from tests._data_support import LAYOUT, require


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _rewrite_weights(path: Path, edit) -> None:
    state = load_file(path / 'model.safetensors')
    edit(state)
    save_file(state, str(path / 'model.safetensors'))


def test_random_checkpoint_round_trip(tiny_checkpoint: Path) -> None:
    modules, report = load_sa2va(tiny_checkpoint)
    written = load_file(tiny_checkpoint / 'model.safetensors')
    again = official_state_dict(modules)
    assert set(again) == set(written)
    for key in written:
        assert torch.equal(again[key], written[key]), key
    assert report.n_tensors == len(written)


def test_missing_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    _rewrite_weights(ckpt, lambda s: s.pop('text_hidden_fcs.2.weight'))
    with pytest.raises(CheckpointError, match=r'missing.*text_hidden_fcs\.2\.weight'):
        load_sa2va(ckpt)


def test_unexpected_key_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    _rewrite_weights(ckpt, lambda s: s.__setitem__('mlp1.7.weight', torch.zeros(3)))
    with pytest.raises(CheckpointError, match=r'no place in the model.*mlp1\.7\.weight'):
        load_sa2va(ckpt)


def test_shape_mismatch_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    _rewrite_weights(ckpt, lambda s: s.__setitem__('mlp1.1.bias', torch.zeros(5)))
    with pytest.raises(CheckpointError, match=r'shape mismatch.*mlp1\.1\.bias: checkpoint \(5,\)'):
        load_sa2va(ckpt)


def test_missing_shard_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    (ckpt / 'model.safetensors').rename(ckpt / 'model-00001-of-00002.safetensors')
    index = {
        'metadata': {},
        'weight_map': {'a': 'model-00001-of-00002.safetensors', 'b': 'model-00002-of-00002.safetensors'},
    }
    (ckpt / 'model.safetensors.index.json').write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match='model-00002-of-00002.safetensors'):
        load_sa2va(ckpt)


def test_other_architecture_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    config = json.loads((ckpt / 'config.json').read_text())
    config['model_type'] = 'sa2va_qwen2_5_vl'
    (ckpt / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointConfigError, match='is not a Sa2VA config'):
        load_sa2va(ckpt)


def test_unknown_qwen_family_is_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    config = json.loads((ckpt / 'config.json').read_text())
    config['text_config'] = dict(config.pop('llm_config'), model_type='qwen2_vl_text')
    config['vision_config']['model_type'] = 'qwen2_vl'
    (ckpt / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointConfigError, match="'qwen2_vl_text'.*no Sa2VA family"):
        load_sa2va(ckpt)


def test_internlm2_llm_is_refused_plainly(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = _copy_checkpoint(tiny_checkpoint, tmp_path / 'ckpt')
    config = json.loads((ckpt / 'config.json').read_text())
    config['llm_config']['model_type'] = 'internlm2'
    config['llm_config']['architectures'] = ['InternLM2ForCausalLM']
    (ckpt / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointConfigError, match='InternLM2-based Sa2VA-8B and Sa2VA-26B'):
        load_sa2va(ckpt)


# Every published Sa2VA checkpoint -> supported? (the README's model table must say exactly this)
PUBLISHED_CHECKPOINTS = {
    'Sa2VA-1B': True,
    'Sa2VA-4B': True,
    'Sa2VA-8B': False,
    'Sa2VA-26B': False,
    'Sa2VA-InternVL3-2B': True,
    'Sa2VA-InternVL3-8B': True,
    'Sa2VA-InternVL3-14B': True,
    'Sa2VA-Qwen2_5-VL-3B': True,
    'Sa2VA-Qwen2_5-VL-7B': True,
    'Sa2VA-Qwen3-VL-4B': True,
}


def test_readme_model_table_lists_every_checkpoint_and_its_preset() -> None:
    from projects.sa2va_vessel.models.presets import PRESETS, QWEN_PRESETS
    from tests._data_support import REPO_ROOT

    rows = {}
    for line in (REPO_ROOT / 'README.md').read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if len(cells) == 4 and cells[0].startswith('Sa2VA-'):
            rows[cells[0]] = cells
    assert set(rows) == set(PUBLISHED_CHECKPOINTS)
    for name, supported in PUBLISHED_CHECKPOINTS.items():
        _, _, verdict, preset = rows[name]
        assert verdict.startswith('yes' if supported else 'no: refused'), (name, verdict)
        if supported:
            assert preset.strip('`') in set(PRESETS) | set(QWEN_PRESETS), (name, preset)
        else:
            assert 'InternLM2' in verdict and preset == '-', (name, verdict)


def test_name_map_covers_the_real_8b_layout_exactly(tmp_path: Path) -> None:
    """Our module tree at Sa2VA-InternVL3-8B shapes (on the meta device) <-> the real export's key set."""
    index = json.loads((require(LAYOUT, '8B layout fixture') / 'model.safetensors.index.json').read_text())
    real_keys = set(index['weight_map'])
    config, sam2 = official_config('sa2va-internvl3-8b', vocab_size=151679, dtype='bfloat16')
    (tmp_path / 'config.json').write_text(json.dumps(config))
    (tmp_path / 'sam2_config.json').write_text(json.dumps(sam2))
    with torch.device('meta'):
        modules = Sa2VAModules(read_architecture(tmp_path))
    state = modules.state_dict()
    ours_as_official = set(ours_to_official(state))
    passthrough = {k for k in real_keys if k.startswith(PASSTHROUGH_PREFIXES)}
    assert passthrough, 'the real layout holds SAM2 memory modules; they must be carried through'
    assert ours_as_official == real_keys - passthrough
    for key in real_keys - passthrough:
        for ours, _ in official_to_ours(key, torch.empty(3, 3, device='meta')):
            assert ours.split('#')[0] in state, (key, ours)

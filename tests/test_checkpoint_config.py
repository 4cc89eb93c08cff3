"""One reader of config.json: the data side and the model side read the same input settings.

Each case is one where the two readers used to disagree (force_image_size fell back to 448 in the
dataset and to vision_config.image_size in the model; a missing template was a KeyError in one and
'qwen_chat' in the other). The expected values are the official Sa2VAChatModel's
(``config.force_image_size or config.vision_config.image_size``, ``config.template.replace('-', '_')``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from projects.sa2va_vessel.datasets.checkpoint_config import CheckpointConfigError, checkpoint_inputs
from projects.sa2va_vessel.models.configuration import architecture_from_config, read_architecture
from projects.sa2va_vessel.models.presets import official_config


def _write(tmp_path: Path, cfg: dict, sam2: dict) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / 'config.json').write_text(json.dumps(cfg))
    (tmp_path / 'sam2_config.json').write_text(json.dumps(sam2))
    return tmp_path


@pytest.fixture(scope='module')
def internvl() -> tuple[dict, dict]:
    return official_config('tiny', vocab_size=1000, dtype='float32')


def _both(path: Path):
    """(data side's settings, model side's architecture) of one directory."""
    return checkpoint_inputs(path), read_architecture(path)


def test_force_image_size_null_falls_back_to_the_vision_tower_size(internvl, tmp_path) -> None:
    cfg, sam2 = copy.deepcopy(internvl)
    cfg['force_image_size'] = None
    cfg['vision_config']['image_size'] = 224  # the official fallback; the old data side said 448
    inputs, arch = _both(_write(tmp_path, cfg, sam2))
    assert inputs.image_size == arch.force_image_size == 224
    assert inputs.tokens_per_tile == arch.num_image_tokens == (224 // 14) ** 2 // 4
    del cfg['force_image_size']
    inputs, arch = _both(_write(tmp_path / 'absent', cfg, sam2))
    assert inputs.image_size == arch.force_image_size == 224


def test_no_tile_size_at_all_is_an_error_naming_the_file(internvl, tmp_path) -> None:
    cfg, sam2 = copy.deepcopy(internvl)
    cfg['force_image_size'] = None
    del cfg['vision_config']['image_size']
    path = _write(tmp_path, cfg, sam2)
    for read in (checkpoint_inputs, read_architecture):
        with pytest.raises(CheckpointConfigError, match=r'config\.json: neither force_image_size nor'):
            read(path)


def test_a_missing_internvl_template_is_one_error_for_both_readers(internvl, tmp_path) -> None:
    cfg, sam2 = copy.deepcopy(internvl)
    del cfg['template']
    path = _write(tmp_path, cfg, sam2)
    for read in (checkpoint_inputs, read_architecture):  # was a KeyError in one, 'qwen_chat' in the other
        with pytest.raises(CheckpointConfigError, match=r"config\.json: no 'template' entry"):
            read(path)


def test_template_dashes_are_underscores_as_in_the_official_model(internvl, tmp_path) -> None:
    cfg, sam2 = copy.deepcopy(internvl)
    cfg['template'] = 'internlm2-chat'
    inputs, arch = _both(_write(tmp_path, cfg, sam2))
    assert inputs.template == arch.template == 'internlm2_chat'


def test_tiling_switches_agree(internvl, tmp_path) -> None:
    cfg, sam2 = copy.deepcopy(internvl)
    cfg.update(dynamic_image_size=False, min_dynamic_patch=2, max_dynamic_patch=6, use_thumbnail=False)
    inputs, arch = _both(_write(tmp_path, cfg, sam2))
    assert (inputs.min_num, inputs.max_num) == (arch.min_dynamic_patch, arch.max_dynamic_patch) == (1, 1)
    assert inputs.use_thumbnail is arch.use_thumbnail is False


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_qwen_families_without_a_template_use_qwen_chat(preset, tmp_path) -> None:
    cfg, sam2 = official_config(preset, vocab_size=1000, dtype='float32')
    del cfg['template']  # the official Qwen-VL code never reads it; training uses qwen_chat
    inputs = checkpoint_inputs(_write(tmp_path, cfg, sam2))
    arch = architecture_from_config(cfg, sam2, tmp_path)
    assert inputs.template == arch.template == 'qwen_chat'
    assert inputs.family == arch.family == preset.split('-', 1)[1]


def test_unreadable_config_names_the_file(tmp_path) -> None:
    for read in (checkpoint_inputs, read_architecture):
        with pytest.raises(CheckpointConfigError, match=r'config\.json: missing') as err:
            read(tmp_path)
        assert isinstance(err.value, FileNotFoundError)
    (tmp_path / 'config.json').write_text('{"template": ')
    for read in (checkpoint_inputs, read_architecture):
        with pytest.raises(CheckpointConfigError, match=r'config\.json: not valid JSON'):
            read(tmp_path)

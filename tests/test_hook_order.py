"""docs/ARCHITECTURE.md's hook-order table is the order the runner of configs/vessel_lora.py calls."""

from __future__ import annotations

import re
from pathlib import Path

from mmengine.config import Config

from projects.sa2va_vessel.engine.runner import build_runner, prepare_config
from tests.conftest import REPO_ROOT

ARCHITECTURE = REPO_ROOT / 'docs' / 'ARCHITECTURE.md'


def documented_order() -> list[tuple[str, str]]:
    """(hook, priority) rows between the hook-order markers."""
    text = ARCHITECTURE.read_text()
    table = text.split('<!-- hook-order:start -->', 1)[1].split('<!-- hook-order:end -->', 1)[0]
    return re.findall(r'^\| \d+ \| `(\w+)` \| (\w+) \|', table, flags=re.M)


def test_documented_hook_order_is_the_runners(tiny_checkpoint, synthetic_vessels, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    # the shipped config's hooks on the plain runner (the tiny model, so that it builds on a CPU)
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora.py'))
    tiny = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora_tiny.py'))
    for key in ('deepspeed', 'mixed_precision', 'model', 'optim_wrapper', 'train_dataloader', 'val_dataloader'):
        cfg[key] = tiny[key]
    cfg.work_dir, cfg.launcher = str(tmp_path), 'none'
    runner = build_runner(prepare_config(cfg, on_gpu=False))
    built = [(type(h).__name__, str(h.priority)) for h in runner.hooks]
    documented = documented_order()
    assert documented, f'{ARCHITECTURE}: no hook-order table'
    assert built == [(name, priority) for name, priority in documented]

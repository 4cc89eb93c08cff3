"""The DeepSpeed json's "auto" entries, filled from the mmengine config."""

from __future__ import annotations

import json

from mmengine.config import Config

from projects.sa2va_vessel.engine.runner import REPO_ROOT, deepspeed_config_path, resolve_deepspeed_config


def _resolved(world_size: int = 1, **changes) -> dict:
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora.py'))
    cfg.merge_from_dict(changes)
    ds = json.loads(deepspeed_config_path(cfg.deepspeed).read_text())
    return resolve_deepspeed_config(ds, cfg, on_gpu=True, world_size=world_size)


def test_auto_entries_follow_the_config():
    ds = _resolved()
    assert ds['train_micro_batch_size_per_gpu'] == 32 and ds['gradient_accumulation_steps'] == 1
    assert ds['gradient_clipping'] == 1.0 and ds['bf16']['enabled'] is True and ds['fp16']['enabled'] is False


def test_bf16_overflow_scan_only_without_the_guard():
    # the guard stops the run on a non-finite gradient, so DeepSpeed's per-gradient scan is redundant
    assert _resolved()['bf16']['check_grad_overflow'] is False
    assert _resolved(default_hooks=dict(gradient_guard=None))['bf16']['check_grad_overflow'] is True
    assert _resolved(default_hooks=dict(gradient_guard=dict(check=False)))['bf16']['check_grad_overflow'] is True


def test_gradient_reduction_overlaps_only_with_several_ranks():
    # one rank reduces nothing; overlap_comm would only add a device sync at the end of each backward
    assert _resolved(world_size=1)['zero_optimization']['overlap_comm'] is False
    assert _resolved(world_size=8)['zero_optimization']['overlap_comm'] is True

"""Configs say what runs: every shipped config writes its loop, schedule, retention and optimizer
wrapper, the runner takes them as written, and a config that contradicts them is refused with the
key to write (engine/runner.py ``check_config``)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from mmengine.config import Config

from projects.sa2va_vessel.engine.runner import ConfigError, check_config, prepare_config
from projects.sa2va_vessel.engine.schedule import warmup_cosine_schedule
from tests.conftest import REPO_ROOT

BASE = dict(warmup_ratio=0.03, warmup_start_factor=1e-3)  # configs/_base_/schedules/lora_adamw.py
OFFICIAL = dict(warmup_ratio=0.05, warmup_start_factor=1e-5)  # configs/vessel_lora_official.py
TOY = dict(warmup_ratio=0.34, warmup_start_factor=0.1)  # tests/configs/toy.py
DS, PLAIN = 'DeepSpeedOptimWrapper', 'SyncFreeOptimWrapper'

# What the runner trained each config with before the configs wrote it out (it derived the
# schedule from lr_schedule and max_iters, moved max_keep_ckpts to checkpoint_keep_last, swapped
# the loop and picked the wrapper): config -> (max_iters, schedule recipe, keep last, wrapper).
SHIPPED = {
    'configs/vessel_lora.py': (2000, BASE, 2, DS),
    'configs/vessel_lora_8b_24g.py': (2000, BASE, 2, PLAIN),
    'configs/vessel_lora_official.py': (2000, OFFICIAL, 2, DS),
    'configs/vessel_lora_tiny.py': (300, BASE, 2, PLAIN),
    'configs/vessel_lora_video.py': (2000, BASE, 2, DS),
    'configs/vessel_lora_video_tiny.py': (30, BASE, 2, PLAIN),
    'tests/configs/tiny_real.py': (3, BASE, 2, PLAIN),
    'tests/configs/tiny_video.py': (30, BASE, 2, PLAIN),
    'tests/configs/toy.py': (6, TOY, 2, PLAIN),
    'tests/configs/toy_resume.py': (10, TOY, 2, PLAIN),
    'tests/configs/toy_val.py': (6, TOY, 1, PLAIN),
}


def load(path: str, **options) -> Config:
    cfg = Config.fromfile(str(REPO_ROOT / path))
    cfg.merge_from_dict(options)
    cfg.work_dir = '/nonexistent/work_dir'  # prepare_config reads nothing there without --resume
    return cfg


def test_every_shipped_config_is_in_the_table() -> None:
    shipped = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'configs').glob('*.py')}
    shipped |= {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'tests' / 'configs').glob('*.py')}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize('on_gpu', [False, True], ids=['cpu', 'gpu'])
@pytest.mark.parametrize('path', sorted(SHIPPED))
def test_shipped_config_runs_as_written(path: str, on_gpu: bool) -> None:
    max_iters, recipe, keep_last, wrapper = SHIPPED[path]
    cfg = prepare_config(load(path), on_gpu=on_gpu)
    assert cfg.default_scope == 'sa2va_vessel'
    assert 'custom_imports' not in cfg or not any(m.startswith('projects.') for m in cfg.custom_imports.imports)
    assert dict(cfg.train_cfg)['type'] == 'ResumableIterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == max_iters
    assert [dict(s) for s in cfg.param_scheduler] == warmup_cosine_schedule(max_iters, **recipe)
    assert cfg.checkpoint_keep_last == keep_last and cfg.default_hooks.checkpoint.max_keep_ckpts == -1
    assert cfg.optim_wrapper.type == wrapper


@pytest.mark.parametrize('path', sorted(p for p in SHIPPED if p.startswith('configs/')))
def test_shipped_configs_stream_epoch_coded_indices(path: str) -> None:
    # the data sets read the epoch from the index (datasets/epoch_samplers.py): a plain
    # DefaultSampler would give every epoch the same augmentation and restart the loader
    sampler = load(path).train_dataloader.sampler
    assert sampler.type == 'sa2va_vessel.EpochStreamSampler' and sampler.shuffle


def _refused(cfg: Config, on_gpu: bool = False) -> str:
    with pytest.raises(ConfigError) as err:
        check_config(cfg, on_gpu)
    return str(err.value)


def test_a_config_the_runner_would_have_to_rewrite_is_refused_naming_the_key() -> None:
    msg = _refused(load('tests/configs/toy.py', **{'train_cfg.type': 'IterBasedTrainLoop'}))
    assert 'train_cfg.type' in msg and "'ResumableIterBasedTrainLoop'" in msg
    cfg = load('tests/configs/toy.py')
    del cfg.train_cfg['type']  # mmengine would build its IterBasedTrainLoop
    assert "type='ResumableIterBasedTrainLoop'" in _refused(cfg)

    msg = _refused(load('tests/configs/toy.py', **{'default_hooks.checkpoint.max_keep_ckpts': 3}))
    assert 'max_keep_ckpts=-1 and checkpoint_keep_last=3' in msg

    msg = _refused(load('tests/configs/toy.py', lr_schedule=dict(warmup_ratio=0.5)))
    assert 'lr_schedule' in msg and str(warmup_cosine_schedule(6, warmup_ratio=0.5)) in msg

    msg = _refused(load('tests/configs/toy.py', default_scope='mmengine'))
    assert "default_scope = 'sa2va_vessel'" in msg

    msg = _refused(load('configs/vessel_lora_tiny.py', **{'val_dataloader.collate_fn.type': 'vessel_collate'}))
    assert "val_dataloader.collate_fn.type='sa2va_vessel.vessel_collate'" in msg


def test_optimizer_wrapper_must_be_the_one_the_runner_trains_with() -> None:
    msg = _refused(load('tests/configs/toy.py', deepspeed='deepspeed_zero2'))
    assert "optim_wrapper.type='DeepSpeedOptimWrapper'" in msg
    msg = _refused(load('configs/vessel_lora.py', deepspeed='none'))
    assert "optim_wrapper.type='MasterWeightOptimWrapper'" in msg  # bf16 with master_weights = True
    msg = _refused(load('configs/vessel_lora.py', deepspeed='none', master_weights=False))
    assert "optim_wrapper.type='SyncFreeOptimWrapper'" in msg
    msg = _refused(load('tests/configs/toy.py', mixed_precision='fp16'), on_gpu=True)
    assert "optim_wrapper.type='AmpOptimWrapper', optim_wrapper.dtype='float16'" in msg
    fp16 = load(
        'tests/configs/toy.py',
        mixed_precision='fp16',
        **{'optim_wrapper.type': 'AmpOptimWrapper', 'optim_wrapper.dtype': 'float16'},
    )
    check_config(fp16, on_gpu=True)
    assert 'needs a GPU' in _refused(fp16, on_gpu=False)
    cfg = load('tests/configs/toy.py')
    del cfg.optim_wrapper['type']
    assert "optim_wrapper.type='SyncFreeOptimWrapper'" in _refused(cfg)


def test_a_schedule_that_does_not_end_at_max_iters_is_refused_with_the_fix() -> None:
    for max_iters, verb in ((20, 'stop early'), (4, 'be cut off')):
        msg = _refused(load('tests/configs/toy.py', **{'train_cfg.max_iters': max_iters}))
        assert f'ends at iteration 6 but train_cfg.max_iters is {max_iters}' in msg and verb in msg
        # the printed command-line fix makes the config consistent
        fix = re.search(r'--cfg-options (.*)$', msg).group(1)
        cfg = load('tests/configs/toy.py')
        cfg.merge_from_dict({k: int(v) for k, v in (o.split('=', 1) for o in shlex.split(fix))})
        check_config(cfg, on_gpu=False)
        assert cfg.param_scheduler[-1].end == max_iters
    check_config(load('tests/configs/toy.py', **{'train_cfg.max_iters': 20, 'param_scheduler': None}), False)


@pytest.mark.parametrize('max_iters', [3, 50, 5000])
def test_max_iters_stretches_the_schedule_of_the_shipped_config(max_iters: int) -> None:
    from projects.sa2va_vessel.engine.launch import load_config, parse_args

    config = str(REPO_ROOT / 'configs/vessel_lora.py')
    cfg = load_config(parse_args([config, '--max-iters', str(max_iters)]))
    check_config(cfg, on_gpu=False)  # the runner takes it as it is
    warmup, cosine = cfg.param_scheduler
    assert cfg.train_cfg.max_iters == cosine.end == max_iters
    assert warmup.end == cosine.begin and warmup.end - warmup.begin >= 2
    if max_iters >= 50:  # the warm-up keeps its share of the run (3% in the _base_ schedule)
        assert warmup.end == round(0.03 * max_iters)
    # the same length through --cfg-options alone is refused: the schedule would be cut off
    with pytest.raises(ConfigError, match='--max-iters'):
        check_config(load_config(parse_args([config, '--cfg-options', f'train_cfg.max_iters={max_iters}'])), False)


def test_train_refuses_before_building_anything(tmp_path: Path) -> None:
    from projects.sa2va_vessel.engine import train
    from tests.toy_runs import toy_cfg

    with pytest.raises(ConfigError, match='max_keep_ckpts=-1 and checkpoint_keep_last=2'):
        train(toy_cfg(tmp_path, {'default_hooks.checkpoint.max_keep_ckpts': 2}))
    assert not any(tmp_path.glob('*/vis_data')), 'no runner may have been built'


def test_deepspeed_switch_sets_the_runner_and_its_wrapper() -> None:
    from projects.sa2va_vessel.engine.launch import load_config, parse_args

    cfg = load_config(parse_args([str(REPO_ROOT / 'tests/configs/toy.py'), '--deepspeed', 'deepspeed_zero2']))
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('deepspeed_zero2', DS)
    check_config(cfg, on_gpu=False)
    cfg = load_config(parse_args([str(REPO_ROOT / 'configs/vessel_lora.py'), '--deepspeed', 'none']))
    # the shipped config trains bf16 weights with fp32 masters on the plain runner
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('none', 'MasterWeightOptimWrapper')
    check_config(cfg, on_gpu=True)
    cfg = load_config(parse_args([str(REPO_ROOT / 'configs/vessel_lora_8b_24g.py'), '--deepspeed', 'none']))
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('none', PLAIN)


def test_stretch_moves_iteration_bounds_only() -> None:
    from projects.sa2va_vessel.engine.schedule import stretch_schedule

    schedule = [
        dict(type='LinearLR', by_epoch=False, begin=0, end=60),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=60, end=2000),
        dict(type='MultiStepLR', by_epoch=True, milestones=[3], begin=0, end=5),  # epochs: untouched
    ]
    warmup, cosine, epochs = stretch_schedule(schedule, 200)
    assert (warmup['end'], cosine['begin'], cosine['end']) == (6, 6, 200)
    assert epochs == schedule[2]
    assert stretch_schedule(schedule, 2) == []  # too short to warm up and decay: constant lr


def test_an_unregistered_optimizer_is_refused_by_name() -> None:
    from projects.sa2va_vessel.engine.launch import load_config, parse_args

    cfg = load_config(parse_args([str(REPO_ROOT / 'tests/configs/toy.py')]))
    cfg.optim_wrapper.optimizer.type = 'AdamWW'
    with pytest.raises(ConfigError, match="optimizer.type='AdamWW' is no registered optimizer; registered: .*AdamW"):
        check_config(cfg, on_gpu=False)


def test_the_24g_config_without_bitsandbytes_says_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # on the device (call 50) the 24 GB config, whose AdamW8bit is bitsandbytes', failed inside
    # mmengine with "None is not a callable object"; as if bitsandbytes were not installed:
    from projects.sa2va_vessel.engine import runner as runner_module
    from projects.sa2va_vessel.engine.launch import load_config, parse_args

    cfg = load_config(parse_args([str(REPO_ROOT / 'configs/vessel_lora_8b_24g.py')]))
    check_config(cfg, on_gpu=True)  # installed here: accepted
    monkeypatch.setattr(runner_module.OPTIMIZERS, 'get', lambda name: None)
    monkeypatch.setattr(runner_module.importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(ConfigError, match=r"'AdamW8bit'.* bitsandbytes .*pip install 'bitsandbytes"):
        check_config(cfg, on_gpu=True)

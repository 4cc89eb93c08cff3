"""``deepspeed_one_process`` (engine/runner.py): the runner a config names for a run of one process,
in place of its ``deepspeed`` (ZeRO partitions nothing over one process)."""

from __future__ import annotations

from pathlib import Path

import pytest

from projects.sa2va_vessel.engine.runner import (
    ResumableFlexibleRunner,
    ResumableRunner,
    apply_one_process_runner,
    check_config,
    launch_world_size,
)
from tests.conftest import REPO_ROOT
from tests.toy_runs import run_length, tensorboard_scalars, toy_cfg

ZERO2_WITH_PLAIN_ON_ONE = {
    'deepspeed': 'deepspeed_zero2',
    'optim_wrapper.type': 'DeepSpeedOptimWrapper',
    'deepspeed_one_process': 'none',
}


def test_one_process_switches_the_runner_and_its_wrapper(tmp_path: Path) -> None:
    cfg = toy_cfg(tmp_path, ZERO2_WITH_PLAIN_ON_ONE)
    assert apply_one_process_runner(cfg, world_size=1)
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('none', 'SyncFreeOptimWrapper')
    check_config(cfg, on_gpu=False)  # the result is a config the runner runs as written
    assert not apply_one_process_runner(cfg, world_size=1), 'a second call changes nothing'


@pytest.mark.parametrize('world_size', [2, 8])
def test_several_processes_keep_the_configs_runner(tmp_path: Path, world_size: int) -> None:
    cfg = toy_cfg(tmp_path, ZERO2_WITH_PLAIN_ON_ONE)
    assert not apply_one_process_runner(cfg, world_size)
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('deepspeed_zero2', 'DeepSpeedOptimWrapper')


def test_the_command_lines_deepspeed_wins(tmp_path: Path) -> None:
    from projects.sa2va_vessel.engine.launch import load_config, parse_args

    options = [f'{k}={v}' for k, v in ZERO2_WITH_PLAIN_ON_ONE.items()]
    args = parse_args(
        [str(REPO_ROOT / 'tests/configs/toy.py'), '--deepspeed', 'deepspeed_zero2', '--cfg-options', *options]
    )
    cfg = load_config(args)
    assert cfg.deepspeed_one_process is None
    assert not apply_one_process_runner(cfg, world_size=1)
    assert cfg.deepspeed == 'deepspeed_zero2'


def test_the_world_size_is_the_launchers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv('WORLD_SIZE', '4')
    assert launch_world_size('pytorch') == 4
    assert launch_world_size('none') == 1  # one process, whatever the environment says
    monkeypatch.delenv('WORLD_SIZE')
    assert launch_world_size('pytorch') == 1


def test_the_shipped_config_trains_one_gpu_with_the_plain_runner_and_several_with_zero2() -> None:
    """Calls 44-45 measured the plain runner on one GPU (docs/PERFORMANCE.md); ZeRO-2 stays the
    runner of several processes."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(REPO_ROOT / 'configs/vessel_lora.py'))
    assert cfg.deepspeed == 'deepspeed_zero2' and cfg.deepspeed_one_process == 'none'
    assert not apply_one_process_runner(cfg.copy(), world_size=8)
    assert apply_one_process_runner(cfg, world_size=1)
    # bf16 trainables with fp32 masters (engine/master_weights.py), as ZeRO-2 keeps them
    assert (cfg.deepspeed, cfg.optim_wrapper.type) == ('none', 'MasterWeightOptimWrapper')
    check_config(cfg, on_gpu=True)


def test_a_zero2_config_trains_one_process_with_the_plain_runner(tmp_path: Path) -> None:
    """Through engine.train as tools/train.py calls it: the plain runner runs, the weights change
    (the gradient guard checks every trainable group after the first step) and the clipping norm
    reaches the log."""
    from projects.sa2va_vessel.engine import train

    options = {**ZERO2_WITH_PLAIN_ON_ONE, 'optim_wrapper.clip_grad': dict(max_norm=1.0)}
    runner = train(toy_cfg(tmp_path, options))
    assert isinstance(runner, ResumableRunner) and not isinstance(runner, ResumableFlexibleRunner)
    assert type(runner.optim_wrapper).__name__ == 'SyncFreeOptimWrapper'
    assert runner.iter == 6
    norms = tensorboard_scalars(tmp_path).get('grad_norm', [])
    assert len(norms) == 5, norms  # updates 1-5 log the norm of the update before (the last's is not read)
    assert all(v > 0 for _, v in norms)


def test_a_checkpoint_of_the_other_runner_is_refused_naming_it(tmp_path: Path) -> None:
    from projects.sa2va_vessel.engine.atomic_checkpoint import check_resume_runner

    plain, zero = tmp_path / 'iter_3.pth', tmp_path / 'iter_6.pth'
    plain.write_bytes(b'')
    zero.mkdir()
    check_resume_runner(plain, deepspeed=False)
    check_resume_runner(zero, deepspeed=True)
    with pytest.raises(ValueError, match=r'iter_3\.pth.*plain runner \(one file\).*--deepspeed none'):
        check_resume_runner(plain, deepspeed=True)
    with pytest.raises(ValueError, match=r'iter_6\.pth.*DeepSpeed \(a directory.*--deepspeed deepspeed_zero2'):
        check_resume_runner(zero, deepspeed=False)


def test_resuming_a_one_process_run_under_zero2_stops_before_loading(tmp_path: Path) -> None:
    """The one-process run wrote plain checkpoints; the same config under ZeRO-2 (here forced with
    --deepspeed, as several processes would make it) must say so, not fail inside DeepSpeed."""
    from projects.sa2va_vessel.engine import train
    from projects.sa2va_vessel.engine.runner import runner_options

    work = tmp_path / 'run'
    train(toy_cfg(work, {**ZERO2_WITH_PLAIN_ON_ONE, **run_length(3)}))
    saved = work / 'iter_3.pth'
    assert saved.is_file()
    cfg = toy_cfg(work, {**ZERO2_WITH_PLAIN_ON_ONE, **run_length(6)})
    cfg.merge_from_dict(runner_options('deepspeed_zero2', None))
    cfg.resume, cfg.load_from = True, str(saved)
    with pytest.raises(ValueError, match='written by the plain runner'):
        train(cfg)
    assert saved.is_file()  # nothing lost

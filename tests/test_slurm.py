"""slurm/train.sbatch with fake SLURM variables and stub srun/scontrol (tests/slurm_stubs), and
the launch checks. The end-to-end test runs two ranks of DeepSpeed ZeRO-2 on CPU through the
script, preempts them with SIGUSR1, requeues, and compares with an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from projects.sa2va_vessel.engine import launch_check
from projects.sa2va_vessel.engine.launch_check import (
    LaunchError,
    check_launch_environment,
    slurm_to_torch_env,
    validate_rank_layout,
)
from tests.conftest import REPO_ROOT, free_port, repo_env
from tests.toy_resume import read_losses
from tests.toy_runs import run_length_args

SCRIPT = REPO_ROOT / 'slurm' / 'train.sbatch'
STUBS = REPO_ROOT / 'tests' / 'slurm_stubs'


def slurm_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = repo_env()
    for key in [k for k in env if k.startswith(('SLURM_', 'SBATCH_', 'MASTER_', 'WORK_DIR'))]:
        del env[key]
    env.update(
        PATH=f'{STUBS}{os.pathsep}{env["PATH"]}',
        STUB_LOG=str(tmp_path / 'stub.jsonl'),
        SLURM_JOB_ID='123456',
        SLURM_JOB_NUM_NODES='2',
        SLURM_NTASKS='8',
        SLURM_NTASKS_PER_NODE='4',
        SLURM_GPUS_ON_NODE='4',
        SLURM_CPUS_PER_TASK='6',
        SLURM_JOB_NODELIST='gpu[01-02]',
        FAKE_HOSTS='gpu01 gpu02',
        SLURM_SUBMIT_DIR=str(REPO_ROOT),
    )
    env.update(extra)
    return env


def run_script(tmp_path: Path, env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    # SLURM runs a copy of the script from its spool directory, in the submission directory.
    spool = tmp_path / 'spool'
    spool.mkdir(exist_ok=True)
    shutil.copy(SCRIPT, spool / 'slurm_script')
    return subprocess.run(
        ['bash', str(spool / 'slurm_script'), *args],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def stub_calls(tmp_path: Path) -> list[dict]:
    log = tmp_path / 'stub.jsonl'
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


# -- the script's environment handling (stubs only record) -------------------------------------
def test_sbatch_header_asks_for_preemption_signal_requeue_and_per_job_logs():
    lines = [l.split()[1] for l in SCRIPT.read_text().splitlines() if l.startswith('#SBATCH')]
    assert '--signal=USR1@120' in lines and '--requeue' in lines
    assert '--open-mode=append' in lines  # a requeued job appends to its log
    output = next(l.split('=', 1)[1] for l in lines if l.startswith('--output='))
    assert '%j' in output and (REPO_ROOT / Path(output).parent).is_dir()
    per_node = {l.split('=')[0]: l.split('=')[1] for l in lines if '=' in l}
    assert per_node['--ntasks-per-node'] == per_node['--gpus-per-node']


def test_sbatch_two_nodes_runs_one_task_per_gpu_with_slurm_rendezvous(tmp_path):
    env = slurm_env(tmp_path)
    out = run_script(tmp_path, env, 'configs/vessel_lora.py', '--cfg-options', 'train_cfg.max_iters=10')
    assert out.returncode == 0, out.stderr
    srun = [c for c in stub_calls(tmp_path) if c['tool'] == 'srun']
    assert len(srun) == 1
    call = srun[0]
    assert call['options'] == [
        '--nodes=2',
        '--ntasks=8',
        '--ntasks-per-node=4',
        '--cpus-per-task=6',
        '--kill-on-bad-exit=1',
    ]
    assert call['command'][1:] == [
        '-u',
        'tools/train.py',
        'configs/vessel_lora.py',
        '--launcher',
        'slurm',
        '--work-dir',
        'work_dirs/vessel_lora',
        '--resume',
        'auto',
        '--cfg-options',
        'train_cfg.max_iters=10',
    ]
    assert call['cwd'] == str(REPO_ROOT)  # found the checkout through SLURM_SUBMIT_DIR
    assert call['env']['MASTER_ADDR'] == 'gpu01'
    assert call['env']['MASTER_PORT'] == str(10000 + 123456 % 50000)
    assert {'tool': 'scontrol', 'args': 'show hostnames gpu[01-02]'} in stub_calls(tmp_path)
    assert 'job 123456 (restart 0)' in out.stdout and '2 node(s) x 4 task(s)' in out.stdout

    # What each srun task then does with its SLURM_* variables (rank 5 = node 1, local 1).
    task = dict(call['env'], SLURM_PROCID='5', SLURM_LOCALID='1', SLURM_NODEID='1')
    assert {k: v for k, v in slurm_to_torch_env(task).items()} == dict(
        RANK='5',
        WORLD_SIZE='8',
        LOCAL_RANK='1',
        LOCAL_WORLD_SIZE='4',
        NODE_RANK='1',
        MASTER_ADDR='gpu01',
        MASTER_PORT=str(10000 + 123456 % 50000),
    )


def test_sbatch_overrides_through_environment(tmp_path):
    env = slurm_env(
        tmp_path,
        SLURM_RESTART_COUNT='2',
        MASTER_PORT='29999',
        WORK_DIR=str(tmp_path / 'wd'),
        PYTHON='python3',
        SA2VA_SRUN_ARGS='--gpu-bind=none',
        SLURM_JOB_NUM_NODES='1',
        SLURM_NTASKS='4',
        SLURM_NTASKS_PER_NODE='',
    )
    out = run_script(tmp_path, env, 'configs/vessel_lora.py', '--work-dir', str(tmp_path / 'x'))
    assert out.returncode == 0, out.stderr
    call = [c for c in stub_calls(tmp_path) if c['tool'] == 'srun'][0]
    assert call['options'] == [
        '--nodes=1',
        '--ntasks=4',
        '--ntasks-per-node=4',
        '--cpus-per-task=6',
        '--kill-on-bad-exit=1',
        '--gpu-bind=none',
    ]
    assert call['command'][0] == 'python3'
    assert call['env']['MASTER_PORT'] == '29999'
    assert 'restart 2' in out.stdout
    assert (tmp_path / 'x').is_dir()  # --work-dir in the args wins over WORK_DIR


def test_sbatch_refuses_tasks_that_do_not_match_gpus(tmp_path):
    env = slurm_env(tmp_path, SLURM_GPUS_ON_NODE='8')  # 4 tasks per node, 8 GPUs
    out = run_script(tmp_path, env, 'configs/vessel_lora.py')
    assert out.returncode == 2
    assert 'one task per GPU' in out.stderr and '--ntasks-per-node=8' in out.stderr
    assert not [c for c in stub_calls(tmp_path) if c['tool'] == 'srun']


def test_sbatch_usage_errors(tmp_path):
    env = slurm_env(tmp_path)
    assert 'usage' in run_script(tmp_path, env).stderr
    missing = run_script(tmp_path, env, 'configs/nope.py')
    assert missing.returncode == 2 and 'configs/nope.py not found' in missing.stderr
    elsewhere = run_script(tmp_path, dict(env, SLURM_SUBMIT_DIR=str(tmp_path)), 'configs/vessel_lora.py')
    assert 'run sbatch from the repository root' in elsewhere.stderr
    outside = {k: v for k, v in env.items() if k != 'SLURM_JOB_ID'}
    assert 'not inside a SLURM job' in run_script(tmp_path, outside, 'x.py').stderr


@pytest.mark.parametrize(
    'rc,marker,requeued,status',
    [
        (75, False, True, 0),  # training said "preempted, checkpoint saved"
        (137, True, True, 0),  # srun killed the slower ranks, but the marker is there
        (1, False, False, 1),  # a crash: no requeue, the status goes through
    ],
)
def test_sbatch_requeues_only_after_a_preemption_checkpoint(tmp_path, rc, marker, requeued, status):
    work = tmp_path / 'wd'
    stub = tmp_path / 'srun_then_marker'
    stub.write_text(
        f'#!/usr/bin/env bash\n"{STUBS}/srun" "$@"\n'
        + (f'echo "iter_4.pth" > "{work}/.preempted"\n' if marker else '')
        + f'exit {rc}\n'
    )
    stub.chmod(0o755)
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    (bindir / 'srun').symlink_to(stub)
    env = slurm_env(tmp_path, WORK_DIR=str(work))
    env['PATH'] = f'{bindir}{os.pathsep}{env["PATH"]}'
    out = run_script(tmp_path, env, 'configs/vessel_lora.py')
    assert out.returncode == status, out.stdout + out.stderr
    calls = [c['args'] for c in stub_calls(tmp_path) if c['tool'] == 'scontrol']
    assert ('requeue 123456' in calls) == requeued
    # a requeue limit stops endless loops
    if requeued:
        (tmp_path / 'stub.jsonl').unlink()
        out = run_script(tmp_path, dict(env, SLURM_RESTART_COUNT='3', SA2VA_MAX_REQUEUES='3'), 'configs/vessel_lora.py')
        assert out.returncode == 75
        assert 'requeue 123456' not in [c['args'] for c in stub_calls(tmp_path) if c['tool'] == 'scontrol']


# -- launch checks ----------------------------------------------------------------------------
def test_launch_check_refuses_srun_tasks_without_launcher():
    env = dict(SLURM_JOB_ID='1', SLURM_NTASKS='8', SLURM_NTASKS_PER_NODE='8', CUDA_VISIBLE_DEVICES='0,1,2,3,4,5,6,7')
    with pytest.raises(LaunchError) as err:
        check_launch_environment('none', env)
    assert 'SLURM allocated 8 tasks' in str(err.value) and '8 GPU(s) visible' in str(err.value)
    assert 'sbatch slurm/train.sbatch CONFIG' in str(err.value)
    check_launch_environment('none', dict(env, SA2VA_SKIP_LAUNCH_CHECK='1'))  # warns only


def test_launch_check_refuses_torchrun_or_mpi_without_launcher():
    with pytest.raises(LaunchError, match='Add --launcher pytorch'):
        check_launch_environment('none', dict(WORLD_SIZE='2', RANK='1', LOCAL_RANK='1'))
    with pytest.raises(LaunchError, match='OMPI_COMM_WORLD_SIZE=4'):
        check_launch_environment('none', dict(OMPI_COMM_WORLD_SIZE='4'))
    with pytest.raises(LaunchError, match='start through srun'):
        check_launch_environment('slurm', {})
    with pytest.raises(LaunchError, match='tools/dist_train.sh'):
        check_launch_environment('pytorch', {})
    check_launch_environment('none', {})  # a plain single process is fine
    check_launch_environment('none', dict(SLURM_JOB_ID='1', SLURM_NTASKS='1'))


def test_rank_layout_catches_duplicates_and_undistributed_samplers():
    def record(rank, first, sampler_len=8, world=2):
        return dict(
            rank=rank,
            world=world,
            host='n1',
            pid=100 + rank,
            local_rank=rank,
            device=None,
            sampler='DefaultSampler',
            sampler_len=sampler_len,
            dataset_len=16,
            first=first,
        )

    assert validate_rank_layout([record(0, [3, 9]), record(1, [12, 0])]) == []
    duplicated = validate_rank_layout([record(0, [3, 9]), record(1, [3, 9])])
    assert len(duplicated) == 1 and 'ranks 0 and 1 start the epoch with the same' in duplicated[0]
    whole = validate_rank_layout([record(0, [3, 9], 16), record(1, [12, 0], 16)])
    assert 'not distributed' in whole[0]
    gpus = [dict(record(r, [r]), device=0) for r in (0, 1)]
    assert 'both use GPU 0 on n1' in validate_rank_layout(gpus)[0]


def test_first_host_without_scontrol(monkeypatch):
    monkeypatch.setattr(launch_check.shutil, 'which', lambda name: None)
    assert launch_check.first_host('gpu[03-05,07],cpu1') == 'gpu03'
    assert launch_check.first_host('node7,node8') == 'node7'
    assert launch_check.tasks_on_this_node({'SLURM_TASKS_PER_NODE': '4(x2),3', 'SLURM_NODEID': '2'}) == 3


def test_duplicated_ranks_stop_with_what_to_do(tmp_path):
    """srun starts 2 tasks of tools/train.py without --launcher slurm: both refuse."""
    env = slurm_env(
        tmp_path,
        FAKE_SRUN_MODE='launch',
        SLURM_NTASKS='2',
        SLURM_NTASKS_PER_NODE='2',
        SLURM_JOB_NUM_NODES='1',
        SLURM_GPUS_ON_NODE='',
    )
    out = subprocess.run(
        ['srun', 'python', 'tools/train.py', 'tests/configs/toy_resume.py', '--work-dir', str(tmp_path / 'wd')],
        cwd=str(REPO_ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert out.stderr.count('SLURM allocated 2 tasks') == 2  # each task says so
    assert 'Submit with `sbatch slurm/train.sbatch CONFIG`' in out.stderr
    assert not (tmp_path / 'wd').exists()  # refused before building anything


# -- end to end: 2 ranks, ZeRO-2, SIGUSR1, requeue, resume ------------------------------------
STEPS = 8  # 16 samples / (2 ranks x batch 2) = 4 batches per epoch: crosses one boundary


def e2e_env(tmp_path: Path, work: Path, **extra: str) -> dict[str, str]:
    return slurm_env(
        tmp_path,
        FAKE_SRUN_MODE='launch',
        SLURM_JOB_ID='4242',
        SLURM_JOB_NUM_NODES='1',
        SLURM_NTASKS='2',
        SLURM_NTASKS_PER_NODE='2',
        SLURM_GPUS_ON_NODE='',
        SLURM_CPUS_PER_TASK='1',
        SLURM_JOB_NODELIST='localhost',
        FAKE_HOSTS='127.0.0.1',
        MASTER_PORT=str(free_port()),
        WORK_DIR=str(work),
        CUDA_VISIBLE_DEVICES='',
        **extra,
    )


E2E_ARGS = (
    'tests/configs/toy_resume.py',
    '--deepspeed',
    'deepspeed_zero2',
    '--cfg-options',
    *run_length_args(STEPS),
    'default_hooks.checkpoint.interval=100',
)


def comparable(records: list[dict]) -> list[tuple]:
    return [(r['iter'], r['indices'], r['losses'], r['weights']) for r in records]


def start_script(tmp_path: Path, env: dict[str, str]) -> subprocess.Popen:
    spool = tmp_path / 'spool'
    spool.mkdir(exist_ok=True)
    shutil.copy(SCRIPT, spool / 'slurm_script')
    return subprocess.Popen(
        ['bash', str(spool / 'slurm_script'), *E2E_ARGS],
        cwd=str(tmp_path),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_sigusr1_two_ranks_zero2_saves_requeues_and_resumes_exactly(tmp_path):
    # The uninterrupted reference runs alongside the job that gets preempted (it sleeps).
    ref, work = tmp_path / 'ref', tmp_path / 'job'
    reference_run = start_script(tmp_path, e2e_env(tmp_path, ref))
    proc = start_script(tmp_path, e2e_env(tmp_path, work, TOY_STEP_SLEEP='0.5'))
    try:
        # SIGUSR1 to both tasks once step 2 is done (SLURM signals every task of the job).
        deadline = time.time() + 240
        while len(read_losses(work, 0)) < 2 or not read_losses(work, 1):
            assert proc.poll() is None and time.time() < deadline, 'run ended before the signal'
            time.sleep(0.05)
        for rank in (1, 0):
            os.kill(read_losses(work, rank)[0]['pid'], signal.SIGUSR1)
        log, _ = proc.communicate(timeout=240)
        ref_log, _ = reference_run.communicate(timeout=240)
    finally:
        for p in (proc, reference_run):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    assert reference_run.returncode == 0, ref_log[-6000:]
    reference = [read_losses(ref, rank) for rank in (0, 1)]
    assert [r['iter'] for r in reference[0]] == list(range(STEPS))
    assert proc.returncode == 0, log[-6000:]  # requeued
    assert 'preempted:' in log and 'requeueing job 4242' in log
    assert {'tool': 'scontrol', 'args': 'requeue 4242'} in stub_calls(tmp_path)
    first = [read_losses(work, rank) for rank in (0, 1)]
    done = len(first[0])
    assert 2 <= done < STEPS and len(first[1]) == done  # both ranks stopped after one step
    ckpt = work / f'iter_{done}.pth'
    assert len(list(ckpt.glob('zero_pp_rank_*_optim_states.pt'))) == 2  # ZeRO-2 partitions
    assert not list(work.glob('.*.partial'))

    # The requeued job starts the same script again and resumes by itself.
    out = run_script(tmp_path, e2e_env(tmp_path, work, SLURM_RESTART_COUNT='1'), *E2E_ARGS, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    for rank in (0, 1):
        records = read_losses(work, rank)
        assert records[done]['iter'] == done  # resumed, not restarted
        assert comparable(records) == comparable(reference[rank]), f'rank {rank}'

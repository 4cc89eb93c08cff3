"""Launcher sanity checks: refuse runs whose processes do not form the world they think.

The mistake this guards against: several processes started without the distributed launcher
(``srun -n 8 python tools/train.py`` without ``--launcher slurm``, ``torchrun ...`` without
``--launcher pytorch``, ``mpirun``, a shell loop). Each process then is rank 0 of a world of
one and trains on the whole data set; the run looks healthy and is 8x wasteful (and the
processes overwrite each other's checkpoints).

Three layers:

* :func:`check_launch_environment` (before anything is built): the environment of the
  process against ``--launcher`` -- SLURM / torchrun / MPI variables that say "you are one of
  N tasks" while the launcher says "single process", GPUs per node against ranks per node.
* :class:`WorkDirLock` (global rank 0): one training run per work dir at a time.
* :func:`check_rank_layout` (in the world, before the first step): ranks, hosts, GPUs and the
  sampler agree -- every rank's first indices differ and each rank sees about
  ``len(dataset) / world_size`` samples per epoch.

``SA2VA_SKIP_LAUNCH_CHECK=1`` turns the environment check into warnings (for deliberate
single-process debugging inside a multi-task allocation).
"""

from __future__ import annotations

import errno
import itertools
import logging
import math
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any, Mapping, MutableMapping, Optional

import torch
from mmengine import dist as mmdist
from mmengine.logging import print_log

SKIP_ENV = 'SA2VA_SKIP_LAUNCH_CHECK'
LOCK_NAME = '.train.lock'


class LaunchError(RuntimeError):
    """The processes were started in a way that would silently train wrongly."""


def _int(env: Mapping[str, str], key: str, default: int = 0) -> int:
    try:
        return int(str(env.get(key, '')).strip() or default)
    except ValueError:
        return default


def _visible_gpus(env: Mapping[str, str]) -> int:
    devices = env.get('CUDA_VISIBLE_DEVICES')
    if devices is not None:
        return len([d for d in devices.split(',') if d.strip() and d.strip() != '-1'])
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def tasks_on_this_node(env: Mapping[str, str]) -> int:
    """SLURM tasks on this node: ``SLURM_NTASKS_PER_NODE``, else this node's entry of
    ``SLURM_TASKS_PER_NODE`` (``"4(x2),3"`` -> 4, 4, 3)."""
    per_node = _int(env, 'SLURM_NTASKS_PER_NODE')
    if per_node:
        return per_node
    counts: list[int] = []
    for part in str(env.get('SLURM_TASKS_PER_NODE', '')).split(','):
        match = re.fullmatch(r'\s*(\d+)(?:\(x(\d+)\))?\s*', part)
        if match:
            counts += [int(match.group(1))] * int(match.group(2) or 1)
    node = _int(env, 'SLURM_NODEID')
    return counts[node] if node < len(counts) else 0


def first_host(nodelist: str) -> str:
    """First host name of a SLURM node list (``scontrol show hostnames``, else parsed)."""
    if shutil.which('scontrol'):
        try:
            out = subprocess.run(
                ['scontrol', 'show', 'hostnames', nodelist], check=True, capture_output=True, text=True, timeout=30
            ).stdout.split()
            if out:
                return out[0]
        except (subprocess.SubprocessError, OSError):
            pass
    head = re.match(r'([^,\[]+)(?:\[([^\]]+)\])?', nodelist.strip())
    if not head:
        return nodelist
    prefix, ranges = head.group(1), head.group(2)
    return prefix + ranges.split(',')[0].split('-')[0] if ranges else prefix


def slurm_to_torch_env(env: Optional[MutableMapping[str, str]] = None) -> dict[str, str]:
    """Translate one srun task's ``SLURM_*`` variables into torch's env:// rendezvous.

    ``RANK = SLURM_PROCID``, ``WORLD_SIZE = SLURM_NTASKS``, ``LOCAL_RANK = SLURM_LOCALID``,
    ``MASTER_ADDR`` = first node of the job (unless set; ``slurm/train.sbatch`` sets it),
    ``MASTER_PORT`` = 10000 + job id mod 50000 (unless set). With this the slurm launcher is
    the pytorch launcher: one code path for one node or many, plain DDP or ZeRO-2.
    """
    env = os.environ if env is None else env
    local_rank = _int(env, 'SLURM_LOCALID')
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus == 1:
        local_rank = 0  # srun bound one GPU to this task (--gpus-per-task / --gpu-bind)
    values = {
        'RANK': str(_int(env, 'SLURM_PROCID')),
        'WORLD_SIZE': str(_int(env, 'SLURM_NTASKS', 1)),
        'LOCAL_RANK': str(local_rank),
        'LOCAL_WORLD_SIZE': str(tasks_on_this_node(env) or 1),
        'NODE_RANK': str(_int(env, 'SLURM_NODEID')),
        'MASTER_ADDR': env.get('MASTER_ADDR')
        or first_host(env.get('SLURM_JOB_NODELIST') or env.get('SLURM_NODELIST') or '127.0.0.1'),
        'MASTER_PORT': env.get('MASTER_PORT') or str(10000 + _int(env, 'SLURM_JOB_ID') % 50000),
    }
    env.update(values)
    return values


def env_rank(launcher: str, env: Optional[Mapping[str, str]] = None) -> int:
    """This process's global rank before the process group exists."""
    env = os.environ if env is None else env
    if launcher == 'slurm':
        return _int(env, 'SLURM_PROCID')
    if launcher == 'pytorch':
        return _int(env, 'RANK')
    return 0


def check_launch_environment(launcher: str, env: Optional[Mapping[str, str]] = None) -> None:
    """Raise :class:`LaunchError` when the environment contradicts ``launcher``."""
    env = os.environ if env is None else env
    problems: list[str] = []
    warnings: list[str] = []
    gpus = _visible_gpus(env)
    in_slurm = bool(env.get('SLURM_JOB_ID'))

    if launcher == 'none':
        world = _int(env, 'WORLD_SIZE', 1)
        if world > 1:
            problems.append(
                f'this process was started by torchrun/a distributed launcher (WORLD_SIZE='
                f'{env.get("WORLD_SIZE")}, RANK={env.get("RANK")}) but with --launcher none: '
                'every process would train alone on the whole data set. Add --launcher pytorch '
                '(tools/dist_train.sh CONFIG NGPUS does this for you).'
            )
        for key in ('OMPI_COMM_WORLD_SIZE', 'PMI_SIZE', 'PMIX_SIZE'):
            if _int(env, key, 1) > 1:
                problems.append(
                    f'{key}={env[key]}: this is one of several MPI processes, but --launcher '
                    'none makes each one a world of its own. Start training with '
                    'tools/dist_train.sh, or on SLURM with sbatch slurm/train.sbatch.'
                )
        ntasks, per_node = _int(env, 'SLURM_NTASKS', 1), _int(env, 'SLURM_NTASKS_PER_NODE', 1)
        if in_slurm and (ntasks > 1 or per_node > 1):
            problems.append(
                f'SLURM allocated {ntasks} tasks (SLURM_NTASKS={env.get("SLURM_NTASKS")}, '
                f'SLURM_NTASKS_PER_NODE={env.get("SLURM_NTASKS_PER_NODE", "unset")}, '
                f'{gpus} GPU(s) visible) but this process runs with --launcher none and a world '
                'size of 1: each srun task would be rank 0 and train on the whole data set (and '
                'run directly in the batch script, only one GPU would train). Submit with '
                '`sbatch slurm/train.sbatch CONFIG` (one srun task per GPU with --launcher '
                'slurm), or run `srun python tools/train.py CONFIG --launcher slurm`.'
            )
        elif gpus > 1:
            warnings.append(
                f'{gpus} GPUs are visible but this run uses one (--launcher none). '
                f'To use them all: tools/dist_train.sh CONFIG {gpus}.'
            )
    elif launcher == 'slurm':
        missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS') if k not in env]
        if missing:
            problems.append(
                f'--launcher slurm needs the variables srun sets ({", ".join(missing)} '
                'missing): start through srun, e.g. sbatch slurm/train.sbatch CONFIG.'
            )
        local = tasks_on_this_node(env)
        problems += _gpu_layout(local, gpus, 'SLURM tasks', warnings)
    elif launcher == 'pytorch':
        missing = [k for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK') if k not in env]
        if missing:
            problems.append(
                f'--launcher pytorch needs the variables torchrun sets ({", ".join(missing)} '
                'missing): start with tools/dist_train.sh CONFIG NGPUS.'
            )
        local = _int(env, 'LOCAL_WORLD_SIZE')
        problems += _gpu_layout(local, gpus, 'processes', warnings)

    for message in warnings:
        print_log(f'Launch check: {message}', logger='current', level=logging.WARNING)
    if problems:
        text = 'Launch check failed:\n  - ' + '\n  - '.join(problems)
        if env.get(SKIP_ENV) == '1':
            print_log(text + f'\n({SKIP_ENV}=1: continuing anyway)', logger='current', level=logging.WARNING)
            return
        raise LaunchError(text + f'\n(Deliberate? Set {SKIP_ENV}=1 to continue anyway.)')


def _gpu_layout(local: int, gpus: int, what: str, warnings: list[str]) -> list[str]:
    if not torch.cuda.is_available() or gpus <= 1 or local <= 0:
        return []  # CPU, or one GPU bound per task
    if local > gpus:
        return [
            f'{local} {what} on this node share {gpus} GPUs: ranks would share a GPU. Start '
            f'one per GPU (sbatch --ntasks-per-node={gpus}).'
        ]
    if local < gpus:
        warnings.append(f'{local} {what} on this node but {gpus} GPUs visible: {gpus - local} GPU(s) idle.')
    return []


# -- one run per work dir ---------------------------------------------------------------------
class WorkDirLock:
    """An exclusive ``flock`` on ``<work_dir>/.train.lock`` held by global rank 0.

    The kernel drops it when the process dies (preemption, kill -9), so a requeued job never
    finds a stale lock. Where the file system has no locks, it logs and goes on.
    """

    def __init__(self, work_dir: str | os.PathLike) -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self.path.read_text().strip() or 'unknown'
            os.close(fd)
            raise LaunchError(
                f'Another training process is using the work dir {self.path.parent} ({holder}). '
                "Two runs in one work dir overwrite each other's checkpoints and logs -- "
                'several identical processes were started without a distributed launcher, or '
                'an earlier run is still going. Stop it, or pass another --work-dir.'
            ) from None
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                print_log(
                    f'{self.path.parent}: the file system has no locks ({exc}); not checking for concurrent runs.',
                    logger='current',
                    level=logging.WARNING,
                )
                return
            raise
        os.ftruncate(fd, 0)
        info = f'host {socket.gethostname()}, pid {os.getpid()}, SLURM job {os.environ.get("SLURM_JOB_ID", "-")}'
        os.write(fd, info.encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


# -- in the world, before the first step -------------------------------------------------------
def _rank_record(dataloader: Any) -> dict[str, Any]:
    sampler = getattr(dataloader, 'sampler', None)
    record: dict[str, Any] = dict(
        rank=mmdist.get_rank(),
        world=mmdist.get_world_size(),
        host=socket.gethostname(),
        pid=os.getpid(),
        local_rank=int(os.environ.get('LOCAL_RANK', 0)),
        device=torch.cuda.current_device() if torch.cuda.is_available() else None,
        sampler=type(sampler).__name__,
        sampler_len=None,
        dataset_len=None,
        first=None,
    )
    try:
        record['dataset_len'] = len(dataloader.dataset)
        record['sampler_len'] = len(sampler)
        record['first'] = [int(i) for i in itertools.islice(iter(sampler), 8)]
    except (TypeError, AttributeError):
        pass
    return record


def validate_rank_layout(records: list[dict[str, Any]]) -> list[str]:
    """Problems in the gathered per-rank records (empty when the layout is sound)."""
    problems: list[str] = []
    world = len(records)
    ranks = sorted(r['rank'] for r in records)
    if ranks != list(range(world)) or any(r['world'] != world for r in records):
        problems.append(f'ranks {ranks} do not form a world of {world}')
    devices: dict[tuple, int] = {}
    for r in records:
        if r['device'] is None:
            continue
        key = (r['host'], r['device'])
        if key in devices:
            problems.append(
                f'ranks {devices[key]} and {r["rank"]} both use GPU {r["device"]} on '
                f'{r["host"]}: start one task per GPU.'
            )
        devices[key] = r['rank']
    n = records[0]['dataset_len']
    if world > 1 and n:
        fair = math.ceil(n / world)
        for r in records:
            if r['sampler_len'] is not None and r['sampler_len'] > fair:
                problems.append(
                    f'rank {r["rank"]} would see {r["sampler_len"]} samples per epoch of a data '
                    f'set of {n} with {world} ranks (expected {fair}): the sampler '
                    f'({r["sampler"]}) is not distributed, so every rank trains on the whole '
                    "data set. Use mmengine's DefaultSampler (the configs do)."
                )
                break
        if n >= world:
            seen: dict[tuple, int] = {}
            for r in records:
                first = tuple(r['first'] or ())
                if first and first in seen:
                    problems.append(
                        f'ranks {seen[first]} and {r["rank"]} start the epoch with the same '
                        f'samples {list(first)}: they are duplicates of one process, not parts '
                        'of one world (started without the distributed launcher, or the '
                        'sampler ignores the rank).'
                    )
                    break
                seen[first] = r['rank']
    return problems


def check_rank_layout(dataloader: Any, logger: Any = None) -> list[dict[str, Any]]:
    """Gather every rank's view (collective) and raise :class:`LaunchError` on a bad layout."""
    records = mmdist.all_gather_object(_rank_record(dataloader))
    problems = validate_rank_layout(records)
    if problems:
        raise LaunchError('Launch check failed (rank layout):\n  - ' + '\n  - '.join(problems))
    if logger is not None:
        hosts = sorted({r['host'] for r in records})
        r0 = records[0]
        logger.info(
            f'Launch check: world size {len(records)} on {len(hosts)} host(s); '
            f'{r0["sampler_len"]} of {r0["dataset_len"]} samples per rank per epoch; '
            f'first indices per rank: {[r["first"][:4] if r["first"] else None for r in records]}.'
        )
    return records

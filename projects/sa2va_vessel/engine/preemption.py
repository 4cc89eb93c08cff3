"""Preemption: SIGUSR1 / SIGTERM become a flag that every rank agrees on after each step.

SIGUSR1 (SLURM's ``--signal=USR1@120``) and SIGTERM (preemption, ``scancel``) only set a flag. After
every iteration the ranks agree on it (an all-reduce of one number, so every rank stops after the
*same* step), save a checkpoint and leave the loop (``resumable_loop.py``). The loop reads that
all-reduce one iteration late (``LaggedAnyRank``): read at once, it would wait for the GPU to finish
the step on every rank, every iteration; one step later on a signal that leaves minutes is free;
``tools/train.py`` then exits with :data:`PREEMPTED_EXIT_CODE` and ``slurm/train.sbatch`` requeues
the job.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from typing import Any, Iterator, Optional

import torch
import torch.distributed as dist
from mmengine.logging import print_log

from .utils import HostCopy

#: Exit status of ``tools/train.py`` after a preemption checkpoint (sysexits' EX_TEMPFAIL:
#: "temporary failure, try again"). ``slurm/train.sbatch`` requeues the job on it.
PREEMPTED_EXIT_CODE = 75
#: Written into the work dir by rank 0 once the preemption checkpoint is complete; the job
#: script requeues on it (srun's exit status can be 137 when it kills the slower ranks).
PREEMPTED_MARKER = '.preempted'


def _log(msg: str, level: int = logging.INFO) -> None:
    print_log(msg, logger='current', level=level)


class PreemptionSignals:
    """Turn SIGUSR1/SIGTERM into a flag the training loop polls once per iteration.

    The handler only sets the flag (and writes one line with ``os.write``, which is safe in a
    signal handler); all work happens in the loop. A second SIGTERM falls back to the previous
    handler, so an impatient ``kill`` still kills.
    """

    SIGNALS = ('SIGUSR1', 'SIGTERM')

    def __init__(self) -> None:
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGTERM and self.received is not None:
            previous = self._previous.get(signum)
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.received = signum
        name = signal.Signals(signum).name
        os.write(
            2,
            f'[sa2va] {name} received: finishing this step, saving a checkpoint, '
            f'then exiting with {PREEMPTED_EXIT_CODE}.\n'.encode(),
        )

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            _log('Not in the main thread: preemption signals are not handled.', logging.WARNING)
            return
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            self._previous[signum] = signal.signal(signum, self._handler)

    def uninstall(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous = {}

    def request(self, signum: int = signal.SIGUSR1) -> None:
        """Ask for a stop as if ``signum`` had arrived (tests, hooks)."""
        self.received = signum


#: The process-wide instance (signals are process-wide too).
PREEMPTION = PreemptionSignals()


@contextlib.contextmanager
def preemption_signals() -> Iterator[PreemptionSignals]:
    PREEMPTION.received = None
    PREEMPTION.install()
    try:
        yield PREEMPTION
    finally:
        PREEMPTION.uninstall()


def _comm_device() -> torch.device:
    if dist.is_initialized() and dist.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _several_ranks() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (a collective)."""
    if not _several_ranks():
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


class LaggedAnyRank:
    """``any_rank``, answered one call late, without waiting for the device.

    Each call starts the all-reduce of this call's flag and returns the agreed value of the
    previous call's (False on the first). Every rank makes the same calls, so every rank gets the
    same answers at the same call. On NCCL the result is copied to pinned host memory behind an
    event, and the next call waits only for that event, which the GPU passed one step earlier.
    One process (no process group, or a world of one) answers at once: no collective to wait for.
    """

    def __init__(self) -> None:
        self._pending: Optional[tuple[Any, HostCopy]] = None  # (work or None, the value's host copy)

    def __call__(self, flag: bool) -> bool:
        if not _several_ranks():
            return flag
        device = _comm_device()
        value = torch.full((1,), 1.0 if flag else 0.0, device=device)  # no host-to-device copy
        work = dist.all_reduce(value, op=dist.ReduceOp.MAX, async_op=True)
        if device.type == 'cuda':
            work.wait()  # on NCCL: the current stream waits for the collective, the host does not
            work = None
        previous, self._pending = self._pending, (work, HostCopy(value))
        if previous is None:
            return False
        prev_work, prev_host = previous
        if prev_work is not None:
            prev_work.wait()
        return bool(prev_host.get().item() > 0)

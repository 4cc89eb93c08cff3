"""Cluster resilience: preemption, atomic checkpoints, exact resume, disk hygiene.

What this adds to both mmengine runners (``Runner`` and ``FlexibleRunner`` + DeepSpeed):

* **Preemption** (:class:`PreemptionSignals`): SIGUSR1 (SLURM's ``--signal=USR1@120``) and
  SIGTERM (preemption, ``scancel``) only set a flag. After every iteration the ranks agree on
  the flag (an all-reduce of one number, so every rank stops after the *same* step), save a
  checkpoint and leave the loop; ``tools/train.py`` then exits with
  :data:`PREEMPTED_EXIT_CODE` and ``slurm/train.sbatch`` requeues the job.
* **Atomic checkpoints** (:class:`ResumableRunnerMixin.save_checkpoint`): every checkpoint is
  written under a temporary name (``.iter_N.pth.partial``, a file for the plain runner, a
  directory of per-rank files for DeepSpeed) and renamed to its final name by rank 0 after
  every rank has finished writing. A final name therefore always holds a complete checkpoint;
  a kill during a save leaves only a ``.partial`` that the next start removes. The
  ``last_checkpoint`` pointer is replaced atomically afterwards.
* **Exact resume**: besides weights, optimizer (ZeRO-2 partitions: one file per rank) and
  scheduler state, every checkpoint holds each rank's RNG states (python, numpy, torch, CUDA)
  and the data position. :class:`ResumableIterBasedTrainLoop` restores the position without
  loading the consumed batches (mmengine's loop loads and discards all of them) and then
  restores the RNG states at the point where they were saved.
* **Disk hygiene**: keep the last N checkpoints (``checkpoint_keep_last``),
  deleted only *after* a newer one is complete (mmengine's hook deletes before saving); files
  that do not match ``iter_<n>.pth`` / ``epoch_<n>.pth`` (e.g. ``best_*``) are never touched;
  a save stops with a clear error when the free disk is below the expected checkpoint size.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import re
import shutil
import signal
import threading
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist
from mmengine import dist as mmdist
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import LOOPS

#: Exit status of ``tools/train.py`` after a preemption checkpoint (sysexits' EX_TEMPFAIL:
#: "temporary failure, try again"). ``slurm/train.sbatch`` requeues the job on it.
PREEMPTED_EXIT_CODE = 75
PARTIAL_SUFFIX = '.partial'
#: Written into the work dir by rank 0 once the preemption checkpoint is complete; the job
#: script requeues on it (srun's exit status can be 137 when it kills the slower ranks).
PREEMPTED_MARKER = '.preempted'
POINTER = 'last_checkpoint'
_RESUMABLE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
_INFO_KEY = 'resume_state'


def _log(msg: str, level: int = logging.INFO) -> None:
    print_log(msg, logger='current', level=level)


# -- preemption signals -----------------------------------------------------------------------
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


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (a collective)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_comm_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


# -- RNG states -------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """This process's RNG states: python, numpy, torch CPU and (when present) every CUDA device."""
    state = {'python': random.getstate(), 'numpy': np.random.get_state(), 'torch': torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        cuda = [s.cpu() for s in state['cuda']]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            _log(
                f'The checkpoint holds {len(cuda)} CUDA RNG states, this process sees '
                f'{torch.cuda.device_count()} devices: CUDA RNG not restored.',
                logging.WARNING,
            )


# -- checkpoint files -------------------------------------------------------------------------
def checkpoint_step(name: str) -> Optional[int]:
    """``iter_12.pth`` -> 12; None for names that are not periodic resume checkpoints."""
    match = _RESUMABLE.match(name)
    return int(match.group(2)) if match else None


def path_size(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob('*') if f.is_file())
    return path.stat().st_size if path.exists() else 0


def resumable_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete periodic checkpoints in ``ckpt_dir``, oldest first (mtime, then step).

    Complete by construction: a final name only ever appears through the rename at the end of
    a save. Temporary ``.partial`` entries start with a dot and never match.
    """
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if checkpoint_step(p.name) is not None]
    return sorted(found, key=lambda p: (p.stat().st_mtime, checkpoint_step(p.name)))


def find_latest_checkpoint(ckpt_dir: Path) -> Optional[Path]:
    """The checkpoint to resume from: what ``last_checkpoint`` names when that is a complete
    checkpoint of this directory, else the highest step among the complete ones."""
    ckpt_dir = Path(ckpt_dir)
    pointer = ckpt_dir / POINTER
    with contextlib.suppress(OSError, UnicodeDecodeError):
        named = Path(pointer.read_text().strip())
        if not named.is_absolute():
            named = ckpt_dir / named.name
        if named.parent.resolve() == ckpt_dir.resolve() and checkpoint_step(named.name) is not None and named.exists():
            return named
    found = resumable_checkpoints(ckpt_dir)
    if not found:
        return None
    return max(found, key=lambda p: checkpoint_step(p.name))


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def remove_partials(ckpt_dir: Path) -> list[Path]:
    """Delete what interrupted saves left behind (``.<name>.partial`` / ``.<name>.old``)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    stale = [p for p in ckpt_dir.iterdir() if p.name.startswith('.') and p.name.endswith((PARTIAL_SUFFIX, '.old'))]
    for path in stale:
        remove_path(path)
    return stale


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f'.{path.name}{PARTIAL_SUFFIX}')
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def free_bytes(path: Path) -> int:
    """Free bytes on the file system of ``path`` (a function, so tests can replace it)."""
    return shutil.disk_usage(path).free


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class InsufficientDiskSpace(RuntimeError):
    pass


class NonFiniteWeights(RuntimeError):
    """A save was refused: trainable weights hold NaN/inf (nothing written, pointer unchanged)."""


# -- runner mixin -----------------------------------------------------------------------------
class ResumableRunnerMixin:
    """Atomic, size-checked, retention-managed checkpoints with RNG and data position.

    ``save_checkpoint`` is collective (all ranks call it, as mmengine's CheckpointHook does;
    DeepSpeed's save is collective anyway).
    """

    preempted = False
    _resume_state: Optional[dict] = None
    _last_saved: Optional[tuple[str, int]] = None

    # config ---------------------------------------------------------------------------------
    @property
    def keep_last(self) -> int:
        """How many periodic checkpoints to keep (<= 0: all)."""
        return int(self.cfg.get('checkpoint_keep_last', -1) or -1)

    def _data_position(self) -> dict[str, Any]:
        loader = self.train_dataloader
        position = dict(world_size=mmdist.get_world_size(), dataset_len=None, batch_size=None, epoch_len=None)
        with contextlib.suppress(TypeError, AttributeError):
            position['dataset_len'] = len(loader.dataset)
            position['batch_size'] = loader.batch_size
            position['epoch_len'] = len(loader)
        return position

    # save -----------------------------------------------------------------------------------
    def save_checkpoint(self, out_dir: str, filename: str, *args: Any, **kwargs: Any) -> None:
        out = Path(out_dir)
        final = out / filename
        partial = out / f'.{filename}{PARTIAL_SUFFIX}'
        meta = kwargs.get('meta') or {}
        by_epoch = kwargs.get('by_epoch', True)
        step = meta.get('iter', self.iter + (0 if by_epoch else 1))
        if self._last_saved == (filename, step) and final.exists():
            return  # already saved at this step (periodic hook, then the preemption save)
        self._check_finite_weights(out, filename)

        if mmdist.is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            remove_path(partial)
        mmdist.barrier()
        self._check_free_space(out, filename)

        # Every rank's RNG states and the data position travel in the message hub, which both
        # runners save (DeepSpeed: in the client state that rank 0 writes).
        states = mmdist.all_gather_object(capture_rng_state())
        self.message_hub.update_info(_INFO_KEY, dict(rng=states, data=self._data_position()))
        try:
            super().save_checkpoint(str(out), partial.name, *args, **kwargs)  # type: ignore[misc]
        finally:
            self.message_hub.pop_info(_INFO_KEY)
        mmdist.barrier()  # every rank has written its part under the temporary name
        if mmdist.is_main_process():
            self._publish(partial, final)
        mmdist.barrier()
        self._last_saved = (filename, step)
        self.logger.info(f'Checkpoint {final} complete ({path_size(final) / 2**20:.1f} MiB).')

    def _publish(self, partial: Path, final: Path) -> None:
        if not partial.exists():
            raise RuntimeError(f'checkpoint save wrote nothing at {partial}')
        old = final.with_name(f'.{final.name}.old')
        if final.exists():  # re-saving a step (e.g. after resuming from an older checkpoint)
            remove_path(old)
            os.replace(final, old)
        os.replace(partial, final)
        _fsync_dir(final.parent)
        remove_path(old)
        if checkpoint_step(final.name) is None:
            return  # best_*.pth and other named saves: no pointer, no retention
        write_atomic(final.parent / POINTER, str(final.resolve()))
        self._apply_retention(final)

    def _apply_retention(self, newest: Path) -> None:
        keep = self.keep_last
        if keep <= 0:
            return
        found = [p for p in resumable_checkpoints(newest.parent) if p != newest]
        for path in found[: max(0, len(found) - (keep - 1))]:
            remove_path(path)
            self.logger.info(f'Removed old checkpoint {path.name} (keeping the last {keep}).')

    def expected_checkpoint_bytes(self, out: Path) -> tuple[int, str]:
        previous = resumable_checkpoints(out)
        if previous:
            return path_size(previous[-1]), f'the size of {previous[-1].name}'
        from .utils import unwrap_model

        model = unwrap_model(self.model)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        buffers = sum(b.numel() * b.element_size() for b in model.buffers())
        # weights + Adam's two moments (+ an fp32 master copy under mixed precision)
        per_param = 16 if self.cfg.get('mixed_precision') else 12
        return (trainable * per_param + buffers, f'{trainable:,} trainable parameters x {per_param} bytes')

    def _check_finite_weights(self, out: Path, filename: str) -> None:
        """Never write (or point ``last_checkpoint`` to) weights that hold NaN/inf."""
        from .guard_probe import nonfinite_parameters
        from .utils import unwrap_model

        bad = nonfinite_parameters(unwrap_model(self.model))
        if any_rank(bool(bad)):
            latest = find_latest_checkpoint(out)
            raise NonFiniteWeights(
                f'Refusing to save {filename} in {out}: {len(bad)} trainable tensor(s) hold '
                f'NaN/inf (on rank {mmdist.get_rank()}: {bad[:3]}{" ..." if len(bad) > 3 else ""}'
                f'). Nothing was written; last_checkpoint still names {latest or "none"}. The '
                'gradient-flow guard stops such runs before the step (is it switched off?); '
                'resume from the last checkpoint with a lower learning rate.'
            )

    def _check_free_space(self, out: Path, filename: str) -> None:
        need, why = self.expected_checkpoint_bytes(out)
        need = int(need * 1.1) + (8 << 20)
        free = free_bytes(out)
        short = free < need
        if any_rank(short):
            latest = find_latest_checkpoint(out)
            raise InsufficientDiskSpace(
                f'Not enough free disk space to save {filename} in {out}: '
                f'{free / 2**30:.2f} GiB free, the checkpoint needs about {need / 2**30:.2f} GiB '
                f'({why}). Nothing was written; the last complete checkpoint is '
                f'{latest or "none"}. Free space (old work dirs, fp32 exports), lower '
                f'checkpoint_keep_last (now {self.keep_last}), or use a '
                '--work-dir on a larger file system, then resume with --resume.'
            )

    # resume ---------------------------------------------------------------------------------
    def resume(self, filename: str, *args: Any, **kwargs: Any) -> None:
        super().resume(filename, *args, **kwargs)  # type: ignore[misc]
        state = self.message_hub.pop_info(_INFO_KEY)
        if state is None:
            self.logger.warning(
                f'{filename} holds no RNG states / data position (saved by an '
                'older version): the resumed run will not repeat the '
                'uninterrupted one exactly.'
            )
        self._resume_state = state


# -- the training loop ------------------------------------------------------------------------
class _SkipFirst:
    """Sampler wrapper that drops the first ``n`` indices once, then passes everything on."""

    def __init__(self, sampler: Any, n: int) -> None:
        self.sampler = sampler
        self.pending = n

    def __iter__(self) -> Iterator[int]:
        it = iter(self.sampler)
        if self.pending:
            n, self.pending = self.pending, 0
            return itertools.islice(it, n, None)
        return it

    def __len__(self) -> int:
        return len(self.sampler) - self.pending

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sampler, name)


@LOOPS.register_module()
class ResumableIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` with preemption, a launcher sanity check and exact resume.

    * Before the first step: :func:`~.launch_check.check_rank_layout` (ranks, GPUs and the
      sampler agree).
    * Resume: jump to the saved data position without loading the consumed batches (epoch =
      iter // batches per epoch, then skip the first ``offset * batch_size`` indices of that
      epoch's order), then restore this rank's RNG states.
    * After every step: if any rank got SIGUSR1/SIGTERM, all save and stop after this step.
    """

    preempted = False

    def run(self) -> Any:
        from .launch_check import check_rank_layout

        runner = self.runner
        runner.call_hook('before_train')
        runner.call_hook('before_train_epoch')
        check_rank_layout(self.dataloader, runner.logger)
        state = getattr(runner, '_resume_state', None)
        if self._iter > 0:
            self._advance(self._iter, state)
        while self._iter < self._max_iters and not self.stop_training:
            runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            if self.preempted:
                break
            self._decide_current_val_interval()
            if (
                runner.val_loop is not None
                and self._iter >= self.val_begin
                and (self._iter % self.val_interval == 0 or self._iter == self._max_iters)
            ):
                runner.val_loop.run()
        runner.call_hook('after_train_epoch')
        runner.call_hook('after_train')
        return runner.model

    def run_iter(self, data_batch: Any) -> None:
        runner = self.runner
        runner.call_hook('before_train_iter', batch_idx=self._iter, data_batch=data_batch)
        outputs = runner.model.train_step(data_batch, optim_wrapper=runner.optim_wrapper)
        runner.call_hook('after_train_iter', batch_idx=self._iter, data_batch=data_batch, outputs=outputs)
        # Same place as CheckpointHook's save (before the counter moves): runner.iter + 1
        # iterations are done, and that is the iteration the checkpoint resumes at.
        # With gradient accumulation, stop only where an optimizer step just happened: the
        # accumulated gradients of a half-done group are not in any checkpoint.
        if any_rank(PREEMPTION.received is not None) and self._at_update_boundary():
            self._save_for_preemption()
        self._iter += 1

    def _at_update_boundary(self) -> bool:
        from .utils import deepspeed_engine_of

        engine = deepspeed_engine_of(self.runner.model)
        if engine is not None:
            return engine.micro_steps % engine.gradient_accumulation_steps() == 0
        wrapper = self.runner.optim_wrapper
        counts = getattr(wrapper, '_accumulative_counts', 1)
        return getattr(wrapper, '_inner_count', 0) % max(1, counts) == 0

    def _save_for_preemption(self) -> None:
        runner = self.runner
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        out_dir = getattr(hook, 'out_dir', None) or runner.work_dir
        template = getattr(hook, 'filename_tmpl', None) or 'iter_{}.pth'
        filename = template.format(self._iter + 1)
        runner.logger.info(
            f'Preemption signal: saving {filename} at iteration {self._iter + 1} '
            f'and stopping (exit code {PREEMPTED_EXIT_CODE}; resume with '
            '--resume).'
        )
        runner.save_checkpoint(out_dir, filename, save_optimizer=True, save_param_scheduler=True, by_epoch=False)
        if mmdist.is_main_process():
            write_atomic(
                Path(runner.work_dir) / PREEMPTED_MARKER,
                f'{Path(out_dir) / filename} complete at iteration {self._iter + 1}\n',
            )
        self.preempted = True
        runner.preempted = True
        self.stop_training = True
        runner.message_hub.update_info('preempted', True, resumed=False)

    # resume ---------------------------------------------------------------------------------
    def _advance(self, done: int, state: Optional[dict]) -> None:
        rng = self._rng_for_this_rank(state)
        data = (state or {}).get('data') or {}
        loader = self.dataloader
        batch_sampler = getattr(loader, 'batch_sampler', None)
        sampler = getattr(loader, 'sampler', None)
        try:
            epoch_len = len(loader)
        except TypeError:
            epoch_len = 0
        if data and (data.get('world_size'), data.get('batch_size'), data.get('dataset_len')) != (
            mmdist.get_world_size(),
            loader.batch_size,
            len(loader.dataset),
        ):
            self.runner.logger.warning(
                f'Data layout changed since the checkpoint ({data}); now world_size='
                f'{mmdist.get_world_size()}, batch_size={loader.batch_size}, dataset_len='
                f'{len(loader.dataset)}: training continues at iteration {done}, but the '
                'sample order differs from the uninterrupted run.'
            )
        fast = (
            epoch_len > 0
            and batch_sampler is not None
            and hasattr(batch_sampler, 'sampler')
            and hasattr(sampler, 'set_epoch')
            and isinstance(loader.batch_size, int)
        )
        if not fast:
            self.runner.logger.warning(
                f'Advancing the data loader {done} batches by loading them (unknown sampler layout).'
            )
            for _ in range(done):
                next(self.dataloader_iterator)
            if rng is not None:
                restore_rng_state(rng)
            return
        epoch, offset = divmod(done, epoch_len)
        iterator = self.dataloader_iterator
        iterator._epoch = epoch
        sampler.set_epoch(epoch)
        if offset:
            batch_sampler.sampler = _SkipFirst(batch_sampler.sampler, offset * loader.batch_size)
        # The uninterrupted run drew a worker seed from the torch RNG when it started this
        # epoch's iterator: before the save if the epoch had begun, after it at a boundary.
        if offset == 0 and rng is not None:
            restore_rng_state(rng)
        iterator._iterator = iter(loader)
        if offset and rng is not None:
            restore_rng_state(rng)
        self.runner.logger.info(
            f'Resumed the data order at epoch {epoch}, batch {offset} of '
            f'{epoch_len} (iteration {done}) without loading the consumed '
            f'batches; RNG states {"restored" if rng else "not restored"}.'
        )

    def _rng_for_this_rank(self, state: Optional[dict]) -> Optional[dict]:
        states = (state or {}).get('rng')
        if not states:
            return None
        rank, world = mmdist.get_rank(), mmdist.get_world_size()
        if len(states) != world:
            self.runner.logger.warning(
                f'The checkpoint holds RNG states of {len(states)} ranks, '
                f'this run has {world}: RNG states not restored.'
            )
            return None
        return states[rank]

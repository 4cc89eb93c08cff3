"""Atomic, size-checked, retention-managed checkpoints with RNG states and data position.

What :class:`ResumableRunnerMixin` adds to both mmengine runners (``Runner`` and ``FlexibleRunner``
+ DeepSpeed):

* **Atomic checkpoints**: every checkpoint is written under a temporary name
  (``.iter_N.pth.partial``, a file for the plain runner, a directory of per-rank files for
  DeepSpeed) and renamed to its final name by rank 0 after every rank has finished writing. A final
  name therefore always holds a complete checkpoint; a kill during a save leaves only a
  ``.partial`` that the next start removes. The ``last_checkpoint`` pointer is replaced atomically
  afterwards.
* **Exact resume** (the state; ``resumable_loop.py`` restores the position): besides weights,
  optimizer (ZeRO-2 partitions: one file per rank) and scheduler state, every checkpoint holds each
  rank's RNG states (python, numpy, torch, CUDA) and the data position.
* **Disk hygiene**: keep the last N checkpoints (``checkpoint_keep_last``), deleted only *after* a
  newer one is complete (mmengine's hook deletes before saving); files that do not match
  ``iter_<n>.pth`` / ``epoch_<n>.pth`` (e.g. ``best_*``) are never touched; a save stops with a
  clear error when the free disk is below the expected checkpoint size.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from mmengine import dist as mmdist
from mmengine.logging import print_log

from ..models.training_checkpoint import LAST_CHECKPOINT
from .preemption import any_rank

PARTIAL_SUFFIX = '.partial'
POINTER = LAST_CHECKPOINT
_RESUMABLE = re.compile(r'^(iter|epoch)_(\d+)\.pth$')
#: Message-hub key of the RNG states and data position inside every checkpoint.
RESUME_STATE_KEY = 'resume_state'


def _log(msg: str, level: int = logging.INFO) -> None:
    print_log(msg, logger='current', level=level)


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


def check_resume_runner(path: Path, deepspeed: bool) -> None:
    """Raise ValueError when the checkpoint at ``path`` was written by the other runner.

    DeepSpeed writes a directory of per-rank files, the plain runner one file, and neither reads
    the other's. The runner can differ from the one that wrote a run's checkpoints when the run
    resumes on another number of processes under ``deepspeed_one_process``, or with another
    ``--deepspeed``.
    """
    if not path.exists():
        return  # mmengine names the missing file itself
    written_by_deepspeed = path.is_dir()
    if written_by_deepspeed == deepspeed:
        return
    wrote = 'DeepSpeed (a directory of per-rank files)' if written_by_deepspeed else 'the plain runner (one file)'
    runs = 'DeepSpeed' if deepspeed else 'the plain runner'
    fix = '--deepspeed deepspeed_zero2' if written_by_deepspeed else '--deepspeed none'
    raise ValueError(
        f'cannot resume from {path}: it was written by {wrote}, and this run trains with {runs}. '
        'A run resumes with the runner that wrote its checkpoints: resume on the number of '
        "processes it was written on (the config's deepspeed_one_process picks the runner of a "
        f'one-process run), or pass {fix}.'
    )


class NonFiniteWeights(RuntimeError):
    """A save was refused: trainable weights hold NaN/inf (nothing written, pointer unchanged)."""


# -- runner mixin -----------------------------------------------------------------------------
class ResumableRunnerMixin:
    """Atomic, size-checked, retention-managed checkpoints with RNG and data position.

    ``save_checkpoint`` is collective (all ranks call it, as mmengine's CheckpointHook does;
    DeepSpeed's save is collective anyway).
    """

    preempted = False
    #: The RNG states and data position of the checkpoint resumed from (None: a fresh run).
    resume_state: Optional[dict] = None
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
        # Hooks that must act before anything is written (the gradient guard's pending check).
        # mmengine's DeepSpeed strategy never calls before_save_checkpoint, so both runners call this.
        self.call_hook('before_checkpoint_write')  # type: ignore[attr-defined]
        self._check_finite_weights(out, filename)

        if mmdist.is_main_process():
            out.mkdir(parents=True, exist_ok=True)
            remove_path(partial)
        mmdist.barrier()
        self._check_free_space(out, filename)

        # Every rank's RNG states and the data position travel in the message hub, which both
        # runners save (DeepSpeed: in the client state that rank 0 writes).
        states = mmdist.all_gather_object(capture_rng_state())
        self.message_hub.update_info(RESUME_STATE_KEY, dict(rng=states, data=self._data_position()))
        try:
            super().save_checkpoint(str(out), partial.name, *args, **kwargs)  # type: ignore[misc]
        finally:
            self.message_hub.pop_info(RESUME_STATE_KEY)
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
        strategy = getattr(self, 'strategy', None)  # FlexibleRunner's; the plain Runner has none
        check_resume_runner(Path(filename), deepspeed=type(strategy).__name__ == 'DeepSpeedStrategy')
        super().resume(filename, *args, **kwargs)  # type: ignore[misc]
        state = self.message_hub.pop_info(RESUME_STATE_KEY)
        if state is None:
            self.logger.warning(
                f'{filename} holds no RNG states / data position (saved by an '
                'older version): the resumed run will not repeat the '
                'uninterrupted one exactly.'
            )
        self.resume_state = state

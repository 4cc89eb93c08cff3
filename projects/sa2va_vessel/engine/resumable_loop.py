"""The training loop: mmengine's ``IterBasedTrainLoop`` with preemption, a launch check and exact resume.

* Before the first step: :func:`~.launch_check.check_rank_layout` (ranks, GPUs and the sampler agree).
* Resume: jump to the saved data position without loading the consumed batches (mmengine's loop
  loads and discards all of them): epoch = iter // batches per epoch, then skip the first
  ``offset * batch_size`` indices of that epoch's order; with an endless sampler
  (``datasets/epoch_samplers.EpochStreamSampler``, whose batches run across epoch boundaries)
  epoch, skip = divmod(iter * batch_size, samples per epoch). Then restore this rank's RNG states
  (``atomic_checkpoint.py`` saved them).
* After every step: if any rank got SIGUSR1/SIGTERM (``preemption.py``), all save and stop after
  this step.

mmengine internals still used, for want of a public way: the loop's own counter ``_iter`` (advanced
here because ``run_iter`` is overridden; there is no public setter) and
``_decide_current_val_interval()`` (its dynamic validation intervals). On resume the loop's data
iterator is replaced by :class:`EpochDataIterator` instead of writing the private ``_epoch`` /
``_iterator`` of mmengine's ``_InfiniteDataloaderIterator``.
"""

from __future__ import annotations

import itertools
import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from mmengine import dist as mmdist
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop

from ..registry import LOOPS
from .atomic_checkpoint import restore_rng_state, write_atomic
from .preemption import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER, PREEMPTION, LaggedAnyRank


class EpochDataIterator:
    """An endless iterator over a data loader that starts the next epoch's order at its end.

    What mmengine's ``_InfiniteDataloaderIterator`` does (``set_epoch`` on the sampler, a short pause
    against worker deadlocks, a new loader iterator), with a public ``epoch``, so that resume can
    create it at any epoch.
    """

    def __init__(self, dataloader: Any, epoch: int = 0) -> None:
        self.dataloader = dataloader
        self.epoch = int(epoch)
        self._iterator = iter(dataloader)

    def __iter__(self) -> 'EpochDataIterator':
        return self

    def _set_sampler_epoch(self) -> None:
        sampler = getattr(self.dataloader, 'sampler', None)
        if not hasattr(sampler, 'set_epoch'):
            sampler = getattr(getattr(self.dataloader, 'batch_sampler', None), 'sampler', None)
        if hasattr(sampler, 'set_epoch'):
            sampler.set_epoch(self.epoch)

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            print_log(
                "Reached the end of the data loader: it restarts with the next epoch's order "
                '(mmengine.dataset.InfiniteSampler would iterate without restarting).',
                logger='current',
                level=logging.WARNING,
            )
            self.epoch += 1
            self._set_sampler_epoch()
            time.sleep(2)  # as mmengine: prevents a possible deadlock of the workers at the transition
            self._iterator = iter(self.dataloader)
            return next(self._iterator)


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
    * After every step: if any rank got SIGUSR1/SIGTERM, all save and stop, at the same step (the
      ranks' agreement is read one step late, so that no step waits for the GPU: preemption.py).
    """

    preempted = False
    _agreement: Optional[LaggedAnyRank] = None

    def _preemption_agreed(self, flag: bool) -> bool:
        if self._agreement is None:
            self._agreement = LaggedAnyRank()
        return self._agreement(flag)

    def run(self) -> Any:
        from .launch_check import check_rank_layout

        runner = self.runner
        runner.call_hook('before_train')
        runner.call_hook('before_train_epoch')
        check_rank_layout(self.dataloader, runner.logger)
        state = getattr(runner, 'resume_state', None)
        if self.iter > 0:
            self._advance(self.iter, state)
        while self.iter < self.max_iters and not self.stop_training:
            runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
            if self.preempted:
                break
            self._decide_current_val_interval()
            if (
                runner.val_loop is not None
                and self.iter >= self.val_begin
                and (self.iter % self.val_interval == 0 or self.iter == self.max_iters)
            ):
                runner.val_loop.run()
        runner.call_hook('after_train_epoch')
        runner.call_hook('after_train')
        return runner.model

    def run_iter(self, data_batch: Any) -> None:
        runner = self.runner
        runner.call_hook('before_train_iter', batch_idx=self.iter, data_batch=data_batch)
        outputs = runner.model.train_step(data_batch, optim_wrapper=runner.optim_wrapper)
        runner.call_hook('after_train_iter', batch_idx=self.iter, data_batch=data_batch, outputs=outputs)
        # Same place as CheckpointHook's save (before the counter moves): runner.iter + 1
        # iterations are done, and that is the iteration the checkpoint resumes at.
        # With gradient accumulation, stop only where an optimizer step just happened: the
        # accumulated gradients of a half-done group are not in any checkpoint.
        if self._preemption_agreed(PREEMPTION.received is not None) and self._at_update_boundary():
            self._save_for_preemption()
        self._iter += 1  # mmengine's counter (``iter`` has no setter)

    def _at_update_boundary(self) -> bool:
        from .utils import deepspeed_engine_of

        engine = deepspeed_engine_of(self.runner.model)
        if engine is not None:
            return engine.micro_steps % engine.gradient_accumulation_steps() == 0
        # after train_step: True when this step ended an accumulation group (the optimizer stepped)
        should_update = getattr(self.runner.optim_wrapper, 'should_update', None)
        return True if should_update is None else bool(should_update())

    def _save_for_preemption(self) -> None:
        runner = self.runner
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        out_dir = getattr(hook, 'out_dir', None) or runner.work_dir
        template = getattr(hook, 'filename_tmpl', None) or 'iter_{}.pth'
        filename = template.format(self.iter + 1)
        runner.logger.info(
            f'Preemption signal: saving {filename} at iteration {self.iter + 1} '
            f'and stopping (exit code {PREEMPTED_EXIT_CODE}; resume with '
            '--resume).'
        )
        runner.save_checkpoint(out_dir, filename, save_optimizer=True, save_param_scheduler=True, by_epoch=False)
        if mmdist.is_main_process():
            write_atomic(
                Path(runner.work_dir) / PREEMPTED_MARKER,
                f'{Path(out_dir) / filename} complete at iteration {self.iter + 1}\n',
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
        endless = bool(getattr(sampler, 'endless', False))
        if endless:  # batches run on across epoch boundaries: count samples, not batches
            epoch, skip = divmod(done * loader.batch_size, len(sampler))
            offset = skip // loader.batch_size
        else:
            epoch, offset = divmod(done, epoch_len)
            skip = offset * loader.batch_size
        sampler.set_epoch(epoch)
        if skip:
            batch_sampler.sampler = _SkipFirst(batch_sampler.sampler, skip)
        # The uninterrupted run drew a worker seed from the torch RNG when it started this
        # epoch's iterator: before the save if the epoch had begun, after it at a boundary. An
        # endless sampler's iterator started once, before the first step: always before the save.
        restore_after = bool(skip) or endless
        if not restore_after and rng is not None:
            restore_rng_state(rng)
        self.dataloader_iterator = EpochDataIterator(loader, epoch)  # starts the loader iterator
        if restore_after and rng is not None:
            restore_rng_state(rng)
        self.runner.logger.info(
            f'Resumed the data order at epoch {epoch}, sample {skip} of {len(sampler)} (batch {offset} of '
            f'{epoch_len}; iteration {done}) without loading the consumed '
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

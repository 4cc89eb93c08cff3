"""Preemption, atomic checkpoints, exact resume and disk hygiene, in-process on the plain
runner (one CPU process, seconds). The two-process DeepSpeed version runs in test_slurm.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from projects.sa2va_vessel.engine import atomic_checkpoint, preemption, resumable_loop
from projects.sa2va_vessel.engine.launch_check import LaunchError, WorkDirLock
from projects.sa2va_vessel.engine.runner import train
from tests.conftest import REPO_ROOT
from tests.toy_resume import read_losses
from tests.toy_runs import in_process_cfg, run_length

CONFIG = REPO_ROOT / 'tests' / 'configs' / 'toy_resume.py'
STEPS = 10  # 8 batches per epoch on one rank: crosses an epoch boundary
# Tests that need no epoch boundary skip mmengine's 2 s pause at each one.
NO_BOUNDARY = {'train_dataloader.dataset.num_samples': 32}


def cfg_for(work_dir: Path, **options) -> Config:
    """tests/configs/toy_resume.py for an in-process run (unique experiment name)."""
    return in_process_cfg(CONFIG, work_dir, options)


def uninterrupted(tmp_path: Path, **options) -> list[dict]:
    work = tmp_path / 'uninterrupted'
    train(cfg_for(work, **options))
    records = read_losses(work)
    assert [r['iter'] for r in records] == list(range(STEPS))
    return records


def comparable(records: list[dict]) -> list[tuple]:
    return [(r['iter'], r['indices'], r['losses'], r['weights']) for r in records]


@pytest.mark.parametrize(
    'at,workers,accum', [(2, 0, 1), (7, 2, 1), (3, 0, 2)], ids=['mid-epoch', 'epoch-end-workers', 'grad-accumulation']
)
def test_preempted_run_resumes_bit_exact(tmp_path, at, workers, accum):
    loader = {
        'train_dataloader.num_workers': workers,
        'train_dataloader.persistent_workers': workers > 0,
        'optim_wrapper.accumulative_counts': accum,
    }
    reference = uninterrupted(tmp_path, **loader)
    # accum=2: the signal comes in step 2 (half of an accumulation): the run stops after 3

    work = tmp_path / 'preempted'
    hooks = [dict(type='LossTraceHook'), dict(type='SignalAtIterHook', at=at - (1 if accum > 1 else 0))]
    runner = train(cfg_for(work, custom_hooks=hooks, **loader))
    # SIGUSR1 arrived during step `at`: that step finished, a checkpoint of it was saved.
    assert runner.preempted
    assert [r['iter'] for r in read_losses(work)] == list(range(at + 1))
    assert (work / f'iter_{at + 1}.pth').is_file()
    assert (work / preemption.PREEMPTED_MARKER).read_text().startswith(str(work))
    assert (work / 'last_checkpoint').read_text().endswith(f'iter_{at + 1}.pth')
    assert not list(work.glob('.*.partial'))
    ckpt = torch.load(work / f'iter_{at + 1}.pth', map_location='cpu', weights_only=False)
    saved = ckpt['message_hub']['runtime_info']['resume_state']
    assert len(saved['rng']) == 1 and set(saved['rng'][0]) >= {'python', 'numpy', 'torch'}
    assert saved['data'] == dict(world_size=1, dataset_len=16, batch_size=2, epoch_len=8)

    # The requeued job: same work dir, --resume auto.
    resumed = train(cfg_for(work, resume=True, **loader))
    assert not resumed.preempted
    records = read_losses(work)
    assert [r['iter'] for r in records] == list(range(STEPS))
    # Same samples, same losses to the last bit, same weights after every step.
    assert comparable(records) == comparable(reference)


def test_preempted_run_resumes_bit_exact_with_the_stream_sampler(tmp_path):
    # 15 samples in batches of 2: the stream's batches run across epoch boundaries (iteration 7 is
    # samples 14 of epoch 0 and 0 of epoch 1), so the resume position is counted in samples
    loader = {
        'train_dataloader.sampler': dict(type='sa2va_vessel.EpochStreamSampler', shuffle=True),
        'train_dataloader.dataset.num_samples': 15,
        'train_dataloader.num_workers': 2,
        'train_dataloader.persistent_workers': True,
    }
    reference = uninterrupted(tmp_path, **loader)
    indices = [i for r in reference for i in r['indices']]
    assert len(set(indices)) == len(indices) and max(indices) >= 15  # one stream, epoch-coded
    work = tmp_path / 'preempted'
    at = 7  # saves iter_8.pth: 16 samples consumed, resumes at epoch 1, sample 1
    hooks = [dict(type='LossTraceHook'), dict(type='SignalAtIterHook', at=at)]
    runner = train(cfg_for(work, custom_hooks=hooks, **loader))
    assert runner.preempted
    train(cfg_for(work, resume=True, **loader))
    assert comparable(read_losses(work)) == comparable(reference)


def test_resume_without_rng_restore_would_differ(tmp_path, monkeypatch):
    """Control: the exactness above comes from the restored RNG states (dropout)."""
    reference = uninterrupted(tmp_path, **NO_BOUNDARY)
    work = tmp_path / 'preempted'
    train(cfg_for(work, custom_hooks=[dict(type='LossTraceHook'), dict(type='SignalAtIterHook', at=2)], **NO_BOUNDARY))
    monkeypatch.setattr(resumable_loop, 'restore_rng_state', lambda state: None)
    train(cfg_for(work, resume=True, **NO_BOUNDARY))
    records = read_losses(work)
    assert [r['indices'] for r in records] == [r['indices'] for r in reference]  # data order
    assert [r['losses'] for r in records[3:]] != [r['losses'] for r in reference[3:]]


def test_interrupted_save_leaves_previous_checkpoint_usable(tmp_path, monkeypatch):
    reference = uninterrupted(tmp_path, **NO_BOUNDARY)
    work = tmp_path / 'crashed'
    from mmengine.fileio.backends.local_backend import LocalBackend

    real_put = LocalBackend.put
    saves = []

    def dying_put(self, obj, filepath):
        if str(filepath).endswith('.pth' + atomic_checkpoint.PARTIAL_SUFFIX):
            saves.append(filepath)
            if len(saves) == 2:  # the second checkpoint (iter_8): half of it, then "killed"
                with open(filepath, 'wb') as f:
                    f.write(obj[: len(obj) // 2])
                raise KeyboardInterrupt('killed while writing the checkpoint')
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', dying_put)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(work, **NO_BOUNDARY))
    monkeypatch.setattr(LocalBackend, 'put', real_put)
    # The half-written checkpoint never got its final name; the previous one is intact.
    assert not (work / 'iter_8.pth').exists()
    assert (work / '.iter_8.pth.partial').exists()
    assert (work / 'last_checkpoint').read_text().endswith('iter_4.pth')
    torch.load(work / 'iter_4.pth', map_location='cpu', weights_only=False)

    train(cfg_for(work, resume=True, **NO_BOUNDARY))  # removes the partial, resumes at 4
    assert not (work / '.iter_8.pth.partial').exists()
    records = read_losses(work)
    # steps 0..6 were traced before the crash (it hit inside step 7's hooks), 4..9 after the
    # resume: the repeated steps match the uninterrupted run exactly
    split = next(i for i in range(1, len(records)) if records[i]['iter'] <= records[i - 1]['iter'])
    assert comparable(records[:split]) == comparable(reference[:split])
    assert comparable(records[split:]) == comparable(reference[4:])


def test_keep_last_n_never_touches_best(tmp_path):
    work = tmp_path / 'keep'
    work.mkdir()
    (work / 'best_dice_iter_1.pth').write_bytes(b'best')
    train(cfg_for(work, **{'default_hooks.checkpoint.interval': 1, 'checkpoint_keep_last': 3}, **NO_BOUNDARY))
    names = sorted(p.name for p in work.iterdir() if p.suffix == '.pth')
    assert names == ['best_dice_iter_1.pth', 'iter_10.pth', 'iter_8.pth', 'iter_9.pth']
    assert (work / 'last_checkpoint').read_text().endswith('iter_10.pth')


def test_low_disk_stops_before_writing(tmp_path, monkeypatch):
    work = tmp_path / 'full'
    monkeypatch.setattr(atomic_checkpoint, 'free_bytes', lambda path: 1 << 20)
    with pytest.raises(atomic_checkpoint.InsufficientDiskSpace) as err:
        train(cfg_for(work))
    message = str(err.value)
    assert 'Not enough free disk space to save iter_4.pth' in message
    assert 'checkpoint_keep_last' in message and 'Nothing was written' in message
    assert not list(work.glob('*.pth')) and not list(work.glob('.*.partial'))


def test_auto_resume_ignores_broken_pointer(tmp_path):
    work = tmp_path / 'pointer'
    train(cfg_for(work, **run_length(4)))
    (work / 'last_checkpoint').write_text(str(work / 'iter_99.pth'))  # points nowhere
    assert atomic_checkpoint.find_latest_checkpoint(work) == work / 'iter_4.pth'
    (work / 'last_checkpoint').write_text('')  # truncated by a kill
    assert atomic_checkpoint.find_latest_checkpoint(work) == work / 'iter_4.pth'
    assert atomic_checkpoint.find_latest_checkpoint(tmp_path / 'empty') is None


def test_work_dir_lock_refuses_a_second_run(tmp_path):
    first = WorkDirLock(tmp_path)
    first.acquire()
    try:
        with pytest.raises(LaunchError, match='Another training process is using the work dir'):
            WorkDirLock(tmp_path).acquire()
    finally:
        first.release()
    second = WorkDirLock(tmp_path)
    second.acquire()  # free again once the first run is gone
    second.release()

"""Video training: clips with a shared [SEG], loss on labelled frames only; through tools/train.py's
runner and tools/test.py --video: held-out video Dice rises, the gradient-flow guard covers the run,
and a preempted run resumes bit-exactly with the clip sampler (fresh clips every epoch)."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from projects.sa2va_vessel.datasets.epoch_samplers import EpochIndexSampler
from projects.sa2va_vessel.datasets.synthetic_video import write_synthetic_video_dataset
from projects.sa2va_vessel.datasets.video_dataset import (
    VesselVideoDataset,
    clip_positions,
    group_frames,
    video_collate,
)
from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.evaluation.cli import test_main as run_test_py  # tools/test.py
from projects.sa2va_vessel.models.sa2va import Sa2VABase
from projects.sa2va_vessel.models.vessel_model import TRAINABLE_GROUPS
from projects.sa2va_vessel.models.video_model import Sa2VAVideoVesselModel
from tests.conftest import REPO_ROOT
from tests.toy_resume import read_losses
from tests.toy_runs import TINY_SCHEDULE, in_process_cfg, run_length


@pytest.fixture(scope='module')
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp('sequences')
    write_synthetic_video_dataset(root, n_videos=4, n_frames=4, seed=0, size=128, val_fraction=0.25, label_every=2)
    return root


def _model(checkpoint) -> Sa2VAVideoVesselModel:
    torch.manual_seed(0)
    return Sa2VAVideoVesselModel(
        str(checkpoint),
        dtype='float32',
        lora=dict(r=8, alpha=16, dropout=0.0),
        gradient_checkpointing=False,
        sam2_feature_cache_size=64,
        vision_feature_cache=True,
    )


def test_grouping_and_clip_rules(tmp_path) -> None:
    groups = group_frames(['a_f0002', 'a_f0000', 'b_c_f0001'])
    assert groups == {'a': [(0, 'a_f0000'), (2, 'a_f0002')], 'b_c': [(1, 'b_c_f0001')]}
    with pytest.raises(Exception, match='name no video'):
        group_frames(['nope'])
    (tmp_path / 'frames.csv').write_text('stem,video,frame,patient\nx1,v,3,p\nx0,v,1,p\n')
    assert group_frames(['x1', 'x0'], tmp_path) == {'v': [(1, 'x0'), (3, 'x1')]}
    labelled = [False] * 10
    labelled[7] = True
    import random

    for seed in range(20):  # the only labelled frame is always in the clip
        pos = clip_positions(10, 3, 2, labelled, random.Random(seed))
        assert 7 in pos and len(pos) == 3 and np.all(np.diff(pos) == 2)
    assert clip_positions(2, 5, 2, [True, False], None) == [0, 1]  # short video: shorter clip


def test_dataset_clips_and_collate(sequences, tiny_checkpoint) -> None:
    ds = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, clips_per_video=2)
    assert len(ds) == 3 * 2
    item = ds[0]
    assert item['pixel_values'].shape == (3, 3, 448, 448) and item['g_pixel_values'].shape == (3, 3, 1024, 1024)
    assert item['masks'].shape == (3, 128, 128) and item['labelled'].any()
    assert not item['masks'][~item['labelled']].any()  # unlabelled frames carry no mask
    again = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, clips_per_video=2)
    assert [again[i]['frame_indices'] for i in range(6)] == [ds[i]['frame_indices'] for i in range(6)]
    batch = video_collate([ds[0], ds[1]])
    assert batch['data']['g_pixel_values'].shape[0] == 6 and batch['data']['frames_per_sample'].tolist() == [3, 3]
    assert batch['data_samples'][0]['mask'].shape[0] == int(item['labelled'].sum())


def test_unlabelled_frames_get_no_loss(sequences, tiny_checkpoint) -> None:
    """Changing an unlabelled frame's (absent) mask changes nothing; a labelled one changes the loss."""
    model = _model(tiny_checkpoint)
    train = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, random_question=False)
    item = train[0]
    batch = video_collate([item])
    base = float(model(batch['data'], batch['data_samples'], mode='loss')['loss_mask'])
    unl, lab = (~item['labelled']).nonzero()[0, 0], item['labelled'].nonzero()[0, 0]
    noisy = dict(item, masks=item['masks'].clone())
    noisy['masks'][unl] = True
    assert float(model(**_args(video_collate([noisy])))['loss_mask']) == pytest.approx(base, abs=0)
    noisy['masks'][lab] = ~noisy['masks'][lab]
    assert float(model(**_args(video_collate([noisy])))['loss_mask']) != pytest.approx(base, rel=1e-3)


def _args(batch: dict) -> dict:
    return dict(data=batch['data'], data_samples=batch['data_samples'], mode='loss')


def test_epoch_index_sampler_carries_the_epoch_into_persistent_workers(sequences, tiny_checkpoint) -> None:
    """Each epoch draws fresh clip starts, the same in a persistent worker as in the main process,
    from the index alone (``EpochIndexSampler``: epoch * len + item)."""
    ds = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=2, clips_per_video=2)
    sampler = EpochIndexSampler(ds, shuffle=True, seed=0)
    loader = DataLoader(ds, batch_size=1, sampler=sampler, num_workers=1, persistent_workers=True, collate_fn=_clip_of)
    by_epoch = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        indices = list(sampler)
        assert sorted(i - epoch * len(ds) for i in indices) == list(range(len(ds)))
        from_worker = [clip for batch in loader for clip in batch]
        assert from_worker == [_clip_of([ds[i]])[0] for i in indices]  # the worker saw this epoch
        by_epoch.append(dict(zip([i - epoch * len(ds) for i in indices], from_worker)))
    assert any(len({clips[item] for clips in by_epoch}) > 1 for item in range(len(ds))), (
        'the clip starts must change from epoch to epoch'
    )
    assert ds.split_index(len(ds) + 1) == (1, 1) and ds.split_index(3) == (0, 3)


def _clip_of(samples: list) -> list:
    return [(s['video'], tuple(s['frame_indices'])) for s in samples]


# ---- through tools/train.py's runner and tools/test.py --video ------------------------------------
# Each test below trains its own run: pytest-xdist hands a module's tests to different workers, where a
# shared module fixture would train once per worker.
VIDEO_CONFIG = REPO_ROOT / 'configs' / 'vessel_lora_video_tiny.py'  # what a user runs
RUN_CONFIG = REPO_ROOT / 'tests' / 'configs' / 'tiny_video.py'  # the same, in-process, with a trace
ITERS = 30  # the config's max_iters: 5 epochs of 6 clips (3 training videos, 2 clips each)
RESUME_ITERS = 8  # the resume test: preempted in iteration 4 (mid-epoch), resumed across the
RESUME_STOP_AT = 3  # epoch boundary at 6 (epoch 1 draws fresh clips); the signal's 0-based iteration


@pytest.fixture(scope='module')
def video_data(tmp_path_factory, tiny_video_checkpoint) -> dict:
    """Synthetic moving sequences: 3 training videos, 2 held-out ones (other vessel trees)."""
    root = tmp_path_factory.mktemp('video_data')
    train_videos, held_out = write_synthetic_video_dataset(
        root / 'data', n_videos=5, n_frames=3, seed=0, size=64, val_fraction=0.4
    )
    return dict(data=root / 'data', checkpoint=tiny_video_checkpoint, train_videos=train_videos, held_out=held_out)


@contextlib.contextmanager
def _config_env(video_data: dict) -> Iterator[None]:
    """The environment the configs read (checkpoint and data)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv('SA2VA_MODEL_PATH', str(video_data['checkpoint']))
        env.setenv('VESSEL_DATA_ROOT', str(video_data['data']))
        yield


def _train(video_data: dict, work: Path, options: Optional[dict] = None) -> Any:
    with _config_env(video_data):
        return train(in_process_cfg(RUN_CONFIG, work, options))


def _video_dice(video_data: dict, checkpoint: Path, out: Path) -> dict:
    """tools/test.py CONFIG CHECKPOINT --video on the held-out (val) videos; frames 0-1 are key frames,
    frame 2 is propagated with SAM2's memory. Threshold 0.5: nothing is chosen on these videos."""
    with _config_env(video_data):
        return run_test_py(
            [
                str(VIDEO_CONFIG),
                str(checkpoint),
                '--video',
                '--split',
                'val',
                '--key-frames',
                '2',
                '--threshold',
                '0.5',
                '--device',
                'cpu',
                '--out',
                str(out),
            ]
        )


def test_video_training_improves_held_out_video_dice(video_data, tmp_path) -> None:
    """tools/train.py's runner on the tiny video config, then tools/test.py --video on videos it never
    saw, before and after; the gradient-flow guard checked the run (it stops a run otherwise: the
    planted bug below)."""
    start = time.process_time()
    _train(video_data, tmp_path / 'run')
    train_cpu = time.process_time() - start
    trace = read_losses(tmp_path / 'run')
    assert [r['iter'] for r in trace] == list(range(ITERS))
    trained_on = {clip[0] for r in trace for clip in r['indices']}
    assert trained_on == set(video_data['train_videos'])
    log = next((tmp_path / 'run').glob('*/*.log')).read_text()
    listed = re.search(r'Trainable groups: (.*)', log).group(1)
    assert [g.split(' (')[0] for g in listed.split(', ')] == list(TRAINABLE_GROUPS)
    assert 'GradientFlowGuardHook: the mask losses reach every trainable unit' in log

    start = time.process_time()
    before = _video_dice(video_data, video_data['checkpoint'], tmp_path / 'before')  # where training starts
    after = _video_dice(video_data, tmp_path / 'run' / f'iter_{ITERS}.pth', tmp_path / 'after')
    eval_cpu = time.process_time() - start
    assert set(after['videos']) == set(before['videos']) == set(video_data['held_out'])
    assert not trained_on & set(after['videos']), 'the scored videos must not be in training'
    b, a = before['summary'], after['summary']
    print(
        f'held-out video Dice (videos {", ".join(video_data["held_out"])}, {a["n_labelled_frames"]} frames): '
        f'sequence {b["mean_sequence_dice"]:.3f} -> {a["mean_sequence_dice"]:.3f}, '
        f'frame {b["mean_frame_dice"]:.3f} -> {a["mean_frame_dice"]:.3f}; temporal consistency '
        f'{b["temporal_consistency_pred"]:.3f} -> {a["temporal_consistency_pred"]:.3f} '
        f'(ground truth {a["temporal_consistency_gt"]:.3f}); propagated frame 2: '
        f'{[round(v["frame_dice"][2], 3) for v in after["videos"].values()]}; CPU s: training '
        f'{train_cpu:.0f}, both evaluations {eval_cpu:.0f}'
    )
    assert a['mean_sequence_dice'] >= b['mean_sequence_dice'] + 0.2, (b, a)
    assert a['mean_frame_dice'] >= b['mean_frame_dice'] + 0.2, (b, a)
    assert (tmp_path / 'after' / 'video_summary.json').is_file()


def test_guard_stops_video_training_when_the_seg_broadcast_is_cut(video_data, tmp_path, monkeypatch) -> None:
    """The [SEG] embedding detached before it is broadcast to the frames: the LLM loss still reaches
    the LLM side, the mask loss only the mask decoder, text_hidden_fcs nothing at all. The guard stops
    the run before the first backward."""
    decode = Sa2VABase.decode_masks
    monkeypatch.setattr(
        Sa2VABase,
        'decode_masks',
        lambda self, embed, high_res, language: decode(self, embed, high_res, language.detach()),
    )
    with pytest.raises(
        RuntimeError,
        match=r'no autograd path to these trainable groups: text_hidden_fcs\. .*\n'
        r'  groups that are connected: lora, token_rows, mask_decoder, projector',
    ):
        _train(video_data, tmp_path, run_length(2, TINY_SCHEDULE))
    assert read_losses(tmp_path) == [], 'no iteration may complete'


def test_resume_is_exact_with_the_clip_sampler(video_data, tmp_path) -> None:
    """8 iterations straight vs. preempted in iteration 4 (mid-epoch) and resumed from iter_4.pth: the
    clips drawn (also those of epoch 1, after the resume), the losses and the trainable weights of
    every step are equal to the bit."""
    options = run_length(RESUME_ITERS, TINY_SCHEDULE)
    _train(video_data, tmp_path / 'straight', options)
    reference = read_losses(tmp_path / 'straight')
    work = tmp_path / 'preempted'
    hooks = [dict(type='LossTraceHook'), dict(type='SignalAtIterHook', at=RESUME_STOP_AT)]
    runner = _train(video_data, work, {**options, 'custom_hooks': hooks})
    assert runner.preempted and (work / f'iter_{RESUME_STOP_AT + 1}.pth').is_file()
    assert [r['iter'] for r in read_losses(work)] == list(range(RESUME_STOP_AT + 1))
    _train(video_data, work, {**options, 'resume': True})
    records = read_losses(work)
    assert [r['iter'] for r in records] == list(range(RESUME_ITERS))
    assert [r['indices'] for r in records] == [r['indices'] for r in reference]  # the same clips
    assert [r['losses'] for r in records] == [r['losses'] for r in reference]
    assert [r['weights'] for r in records] == [r['weights'] for r in reference]

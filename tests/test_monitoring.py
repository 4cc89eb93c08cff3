"""Validation inside training, the best checkpoint, and what reaches TensorBoard.

The toy model (tests/toy_model.py) under the real runner and hooks: in-process with the plain
runner, and 2 processes under torchrun with DeepSpeed ZeRO-2 (FlexibleRunner) on gloo.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config

from tests.conftest import REPO_ROOT, free_port, repo_env, run_cmd
from tests.toy_model import TOY_GROUPS
from tests.toy_runs import TOY_TRAINABLE, in_process_cfg, read_trace, run_length_args, tensorboard_scalars

TOY_VAL_CONFIG = REPO_ROOT / 'tests' / 'configs' / 'toy_val.py'
BEST = 'vessel/best_dice'


def toy_val_cfg(work_dir: Path, options: dict | None = None) -> Config:
    return in_process_cfg(TOY_VAL_CONFIG, work_dir, options)


def val_history(work_dir: Path) -> list[dict]:
    """Validation rounds from mmengine's scalars.json (full float64 precision), in order."""
    [path] = glob.glob(os.path.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    return [r for r in rows if BEST in r]


def tensorboard_image_tags(work_dir: Path) -> dict[str, int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags: dict[str, int] = {}
    for path in glob.glob(os.path.join(str(work_dir), '*', 'vis_data', 'events.out.tfevents.*')):
        acc = EventAccumulator(path, size_guidance={'images': 0})
        acc.Reload()
        for tag in acc.Tags()['images']:
            tags[tag] = tags.get(tag, 0) + len(acc.Images(tag))
    return tags


def state_hash(state: dict) -> str:
    """The hash RankTraceHook records, computed from a checkpoint's state dict."""
    digest = hashlib.sha256()
    for name in sorted(TOY_TRAINABLE):
        digest.update(name.encode())
        digest.update(state[name].detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_plain_runner_best_checkpoint_and_tensorboard(tmp_path):
    from projects.sa2va_vessel.engine import train

    train(toy_val_cfg(tmp_path))
    history = val_history(tmp_path)
    assert [r['step'] for r in history] == [1, 2, 3, 4, 5, 6]  # val every iteration

    # The best checkpoint is the first iteration with the highest val best_dice.
    scores = [r[BEST] for r in history]
    best_i = int(np.argmax(scores))
    best_iter = history[best_i]['step']
    record = json.loads((tmp_path / 'best_checkpoint.json').read_text())
    assert record['iteration'] == best_iter
    assert record['metric'] == BEST and record['rule'] == 'greater'
    assert record['score'] == scores[best_i]
    assert record['threshold'] == history[best_i]['vessel/best_thr']
    assert record['threshold_key'] == 'vessel/best_thr'
    assert record['metrics']['vessel/global_dice'] == history[best_i]['vessel/global_dice']
    bests = sorted(p.name for p in tmp_path.glob('best_*.pth'))
    assert bests == [record['checkpoint']] == [f'best_vessel_best_dice_iter_{best_iter}.pth']

    # Kept apart from the rolling checkpoints, trainable weights only, and the weights of that
    # very iteration (RankTraceHook hashed them after each step).
    ckpt = torch.load(tmp_path / record['checkpoint'], map_location='cpu', weights_only=False)
    assert set(ckpt['state_dict']) == TOY_TRAINABLE
    assert ckpt['meta']['trainable_only'] is True and ckpt['meta']['iter'] == best_iter
    assert state_hash(ckpt['state_dict']) == read_trace(tmp_path)[best_iter - 1]['weights']
    assert (tmp_path / 'iter_6.pth').is_file()

    # TensorBoard: loss parts, lr, grad and update norms per group, val metrics, the curve.
    scalars = tensorboard_scalars(tmp_path)
    for tag in (
        'loss',
        'loss_llm',
        'loss_mask',
        'loss_dice',
        'lr',
        *(f'grad_norm/{g}' for g in TOY_GROUPS),
        *(f'update_norm/{g}' for g in TOY_GROUPS),
        'vessel/global_dice',
        'vessel/best_dice',
        'vessel/best_thr',
        'vessel/mean_cldice',
        'vessel/global_roc_auc',
        'val_curve/global_dice@0.50',
        'val_curve/mean_dice@0.05',
    ):
        assert len(scalars.get(tag, [])) == 6, tag
    for g in TOY_GROUPS:  # ||w_t - w_0|| grows from 0 as the group trains
        values = [v for _, v in sorted(scalars[f'update_norm/{g}'])]
        assert values[0] > 0 and values[-1] > values[0], (g, values)
    images = tensorboard_image_tags(tmp_path)
    assert images.get('val/threshold_curve') == 6
    assert images.get('val_overlay/0') == 6 and images.get('val_overlay/1') == 6
    assert 'val_overlay/2' not in images  # num_images=2
    local = list(tmp_path.glob('*/vis_data/vis_image/val_overlay/0_*.png'))
    assert len(local) == 6


def test_two_processes_deepspeed_validation_and_best_checkpoint(tmp_path):
    # 5 val samples on 2 ranks with batch 2: the sampler pads, the metric must count 5; the
    # run must not hang in the metric's gather or the best-checkpoint save.
    out = run_cmd(
        [
            'bash',
            str(REPO_ROOT / 'tools' / 'dist_train.sh'),
            str(TOY_VAL_CONFIG),
            '2',
            '--work-dir',
            str(tmp_path),
            '--deepspeed',
            'deepspeed_zero2',
            '--cfg-options',
            *run_length_args(3),
            'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=2',
        ],
        env=repo_env({'PORT': str(free_port())}),
        timeout=400,
    ).stdout
    history = val_history(tmp_path)
    assert [r['step'] for r in history] == [1, 2, 3]
    assert all(r['vessel/n_images'] == 5 for r in history)
    record = json.loads((tmp_path / 'best_checkpoint.json').read_text())
    scores = [r[BEST] for r in history]
    assert record['iteration'] == history[int(np.argmax(scores))]['step']
    # FlexibleRunner saves the best without optimizer state: one file, trainable weights only.
    best = tmp_path / record['checkpoint']
    assert best.is_file(), sorted(p.name for p in tmp_path.iterdir())
    state = torch.load(best, map_location='cpu', weights_only=False)['state_dict']
    assert set(state) == TOY_TRAINABLE
    rolling = list(tmp_path.glob('iter_*.pth/mp_rank_00_model_states.pt'))
    assert len(rolling) == 1, rolling  # rolling checkpoints: DeepSpeed dirs, checkpoint_keep_last=1
    # tools/test.py and tools/predict.py read both forms.
    from projects.sa2va_vessel.models.training_checkpoint import checkpoint_kind, read_training_state

    assert checkpoint_kind(best) == 'file' and checkpoint_kind(rolling[0].parent) == 'deepspeed'
    assert set(read_training_state(rolling[0].parent)[0]) == TOY_TRAINABLE
    assert set(read_training_state(best)[0]) == TOY_TRAINABLE
    scalars = tensorboard_scalars(tmp_path)
    for tag in (*(f'update_norm/{g}' for g in TOY_GROUPS), 'vessel/best_dice'):
        assert tag in scalars, tag
    assert 'The best checkpoint with' in out

"""Generation-mode validation (the model writes [SEG] itself), beside the teacher-forced metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.monitor_hooks import threshold_key_of
from projects.sa2va_vessel.evaluation.vessel_metric import VesselGenSegMetric, VesselSegMetric
from tests.conftest import REPO_ROOT
from tests.toy_runs import TINY_SCHEDULE, in_process_cfg, run_length, tensorboard_scalars

TINY = REPO_ROOT / 'configs' / 'vessel_lora_tiny.py'


def _batch(masks: list[np.ndarray]) -> dict:
    return {'data_samples': [{'mask': m[None], 'fov': None, 'img_path': f'im{i}'} for i, m in enumerate(masks)]}


def test_gen_metric_scores_missing_seg_as_empty_and_prefixes_its_keys() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((16, 16)) > 0.5 for _ in range(2)]
    perfect = torch.from_numpy(masks[0][None].astype(np.float32) * 0.98 + 0.01)
    preds = [
        {'prob': perfect, 'generation': {'prob': perfect, 'missing_seg': False}},
        {
            'prob': torch.from_numpy(masks[1][None].astype(np.float32) * 0.98 + 0.01),
            'generation': {'prob': None, 'missing_seg': True},
        },
    ]
    gen, teacher = VesselGenSegMetric(), VesselSegMetric()
    gen.process(_batch(masks), preds)
    teacher.process(_batch(masks), preds)
    g, t = gen.compute_metrics(gen.results), teacher.compute_metrics(teacher.results)
    assert g['gen_missing_seg_rate'] == 0.5 and g['gen_n_missing_seg'] == 1
    assert t['global_dice'] == pytest.approx(1.0)
    tp0 = int(masks[0].sum())
    expected = 2 * tp0 / (2 * tp0 + int(masks[1].sum()))  # sample 2 scored as an empty mask
    assert g['gen_global_dice'] == pytest.approx(expected)
    assert not any(k.startswith('gen_') for k in t) and all(k.startswith('gen_') for k in g)
    assert threshold_key_of('vessel/gen_best_dice') == 'vessel/gen_best_thr'
    with pytest.raises(ValueError, match='VesselValLoop'):
        VesselGenSegMetric().process(_batch(masks), [{'prob': perfect}, {'prob': perfect}])


def test_tiny_run_validates_in_both_modes_and_can_select_by_generation(
    tiny_checkpoint, synthetic_vessels, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    cfg = in_process_cfg(
        TINY,
        tmp_path,
        {
            **run_length(2, TINY_SCHEDULE),
            'train_cfg.val_interval': 2,
            'val_cfg.max_new_tokens': 6,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            'default_hooks.checkpoint.save_best': 'vessel/gen_best_dice',
            'default_hooks.checkpoint.interval': 2,
            'default_hooks.val_visualization': None,
        },
    )
    runner = train(cfg)
    assert runner.val_loop.generation
    series = tensorboard_scalars(tmp_path)
    for key in ('vessel/global_dice', 'vessel/gen_global_dice', 'vessel/gen_missing_seg_rate', 'vessel/gen_best_dice'):
        assert [step for step, _ in series[key]] == [0, 2], key  # before training and at the end
    rate = series['vessel/gen_missing_seg_rate'][-1][1]
    assert 0.0 <= rate <= 1.0
    record = json.loads((tmp_path / 'best_checkpoint.json').read_text())
    assert record['metric'] == 'vessel/gen_best_dice'
    assert record['threshold_key'] == 'vessel/gen_best_thr'
    assert record['threshold'] == record['metrics']['vessel/gen_best_thr']

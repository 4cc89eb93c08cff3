"""Augmentation on by default, one scale for training and prediction, and the export's settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

from projects.sa2va_vessel.engine import train
from projects.sa2va_vessel.engine.runner import disable_feature_cache_when_augmented
from tests.conftest import REPO_ROOT
from tests.toy_runs import TINY_SCHEDULE, in_process_cfg, run_length

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('scale_export')

REAL = REPO_ROOT / 'configs' / 'vessel_lora.py'
TINY = REPO_ROOT / 'configs' / 'vessel_lora_tiny.py'
WINDOW = 128


def test_real_config_augments_training_with_every_family_and_not_validation() -> None:
    cfg = Config.fromfile(str(REAL))
    t = cfg.train_dataloader.dataset.transform
    assert t.type == 'VesselAugment' and t.crop_size == cfg.window == 1024
    from projects.sa2va_vessel.datasets.transforms import VesselAugment

    aug = VesselAugment(**{k: v for k, v in t.items() if k != 'type'})
    assert aug.enabled and aug.hflip > 0 and aug.vflip > 0 and aug.rot90  # flips, rotation
    assert aug.affine_prob > 0 and aug.max_rotate > 0 and aug.scale_range != (1.0, 1.0)  # rotate, scale
    assert aug.brightness > 0 and aug.contrast > 0 and aug.gamma_range != (1.0, 1.0)  # intensity
    assert cfg.val_dataloader.dataset.get('transform') is None


def test_feature_cache_switches_itself_off_only_when_training_is_augmented(monkeypatch) -> None:
    from projects.sa2va_vessel.engine import runner as runner_module

    said = []
    monkeypatch.setattr(runner_module, 'print_log', lambda msg, **kw: said.append(msg))
    cfg = Config.fromfile(str(REAL))
    cfg.model.sam2_feature_cache_size, cfg.model.vision_feature_cache = 256, True
    assert disable_feature_cache_when_augmented(cfg)
    assert cfg.model.sam2_feature_cache_size == 0 and cfg.model.vision_feature_cache is False
    assert any('frozen-feature cache off' in m for m in said)
    tiny = Config.fromfile(str(TINY))  # no transform: the cache stays
    assert not disable_feature_cache_when_augmented(tiny) and tiny.model.sam2_feature_cache_size == 256
    cfg = Config.fromfile(str(REAL))
    cfg.model.sam2_feature_cache_size = 8
    cfg.train_dataloader.dataset.transform.enabled = False
    assert not disable_feature_cache_when_augmented(cfg) and cfg.model.sam2_feature_cache_size == 8


def test_a_training_crop_is_the_prediction_input_of_the_same_window(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Same pixels per SAM2 input and per InternVL tile: a window is predicted at the training scale."""
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.evaluation.inference import ImageSampleBuilder

    write_synthetic_dataset(tmp_path, n=2, seed=3, size=300, val_fraction=0.5)
    crop_only = dict(
        type='VesselAugment',
        crop_size=WINDOW,
        hflip=0.0,
        vflip=0.0,
        rot90=False,
        affine_prob=0.0,
        brightness=0.0,
        contrast=0.0,
        gamma_range=(1.0, 1.0),
        clahe_prob=0.0,
    )
    dataset = VesselSegDataset(str(tmp_path), 'train', str(tiny_checkpoint), max_dynamic_patch=1, transform=crop_only)
    item, raw = dataset[0], dataset.load(0)
    assert item['ori_size'] == (WINDOW, WINDOW) and item['frozen_feature_key'] is None
    # where the crop came from: the one offset whose image pixels give the same mask crop and SAM2 input
    image, mask = raw['image'], raw['mask']
    builder = ImageSampleBuilder(str(tiny_checkpoint), max_dynamic_patch=1)
    found = 0
    for y in range(image.shape[0] - WINDOW + 1):
        for x in range(image.shape[1] - WINDOW + 1):
            if not np.array_equal(mask[y : y + WINDOW, x : x + WINDOW], item['masks'][0].numpy()):
                continue
            window = builder(np.ascontiguousarray(image[y : y + WINDOW, x : x + WINDOW]))
            # one sample builder: the same raw uint8 pixels as the training item
            if torch.equal(window['g_pixel_values'], item['g_pixel_values']):
                assert torch.equal(window['pixel_values'], item['pixel_values'])
                found += 1
    assert found >= 1


@pytest.fixture(scope='module')
def trained_on_windows(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny config trained one step on 128 px crops of 256 px images, validated, best kept."""
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp('windows')
    data, work = root / 'data', root / 'run'
    write_synthetic_dataset(data, n=4, seed=1, size=256, val_fraction=0.5)
    mp = pytest.MonkeyPatch()
    mp.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    mp.setenv('VESSEL_DATA_ROOT', str(data))
    try:
        cfg = in_process_cfg(
            TINY,
            work,
            {
                'train_dataloader.dataset.transform': dict(_delete_=True, type='VesselAugment', crop_size=WINDOW),
                'train_dataloader.num_workers': 0,
                'train_dataloader.persistent_workers': False,
                **run_length(1, TINY_SCHEDULE),
                'train_cfg.val_interval': 1,
                'val_cfg.max_new_tokens': 4,
                'default_hooks.validate_before_train': None,
                'default_hooks.val_visualization': None,
                'default_hooks.checkpoint.interval': 1,
            },
        )
        train(cfg)
    finally:
        mp.undo()
    return work, data


@pytest.mark.slow
def test_a_model_trained_on_windows_predicts_with_the_same_windows(trained_on_windows, tmp_path) -> None:
    from projects.sa2va_vessel.evaluation.cli import predict_main

    work, data = trained_on_windows
    src = tmp_path / 'in'
    src.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (200, 180, 3), dtype=np.uint8)).save(src / 'big.png')
    predict_main([str(work / 'iter_1.pth'), str(src), str(tmp_path / 'out')])  # config from the checkpoint
    manifest = json.loads((tmp_path / 'out' / 'predictions.json').read_text())
    assert manifest['window'] == WINDOW and manifest['window_source'] == 'training crop'
    windows = {Path(e['image']).name: e['windows'] for e in manifest['images']}
    assert windows == {'big.png': 2 * 2}  # 128 px windows with at least 32 px overlap


@pytest.mark.slow
def test_export_records_the_val_threshold_tiles_and_window(trained_on_windows, tmp_path, monkeypatch) -> None:
    from tests._data_support import load_tool

    export_hf = load_tool('export_hf')
    from projects.sa2va_vessel.evaluation.cli import predict_main
    from projects.sa2va_vessel.models.training_checkpoint import PROJECT_KEY

    work, data = trained_on_windows
    record = json.loads((work / 'best_checkpoint.json').read_text())
    monkeypatch.setenv('SA2VA_MODEL_PATH', _model_path(work))  # the base the run trained on
    out = tmp_path / 'export'
    saved_config = str(next(work.glob('*.py')))  # the config the run trained with, as mmengine saved it
    export_hf.main([saved_config, str(work / record['checkpoint']), str(out), '--dtype', 'fp32'])
    settings = json.loads((out / 'config.json').read_text())[PROJECT_KEY]
    assert settings['threshold'] == record['threshold'] == record['metrics']['vessel/best_thr']
    assert 'best_checkpoint.json' in settings['threshold_source']
    assert settings['max_dynamic_patch'] == 1 and settings['window'] == WINDOW
    assert settings['official_predict_forward'] == {
        'threshold': 0.5,
        'max_dynamic_patch': 12,
        'prompt': '"<image>\\n" + question',
    }
    # the non-best checkpoint has no val-chosen threshold to record
    export_hf.main([saved_config, str(work / 'iter_1.pth'), str(tmp_path / 'plain'), '--dtype', 'fp32'])
    assert json.loads((tmp_path / 'plain' / 'config.json').read_text())[PROJECT_KEY]['threshold'] is None
    # prediction from the export applies what it recorded
    src = tmp_path / 'in'
    src.mkdir()
    Image.fromarray(np.zeros((150, 150, 3), np.uint8)).save(src / 'a.png')
    predict_main([str(out), str(src), str(tmp_path / 'pred')])
    manifest = json.loads((tmp_path / 'pred' / 'predictions.json').read_text())
    assert manifest['threshold'] == settings['threshold'] and manifest['threshold_source'] == 'export config.json'
    assert manifest['window'] == WINDOW


def _model_path(work: Path) -> str:
    return Config.fromfile(str(next(work.glob('*.py')))).model.model_path

"""Best-checkpoint and threshold selection read val only: a training run with validation and
save_best on a set whose test images are poisoned (reading one raises) completes, and every
image the run decoded is a train or val image."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from mmengine.config import Config

from tests.conftest import REPO_ROOT


def test_selection_completes_without_reading_test(tmp_path, tiny_checkpoint, synthetic_vessels, monkeypatch):
    import projects.sa2va_vessel.datasets.vessel_dataset as vd
    from projects.sa2va_vessel.engine import train

    data = tmp_path / 'data'
    shutil.copytree(synthetic_vessels, data)
    train_stems = (data / 'splits' / 'train.txt').read_text().split()
    test_stems = train_stems[:2]  # held out: a proper, disjoint test split
    (data / 'splits' / 'train.txt').write_text(''.join(s + '\n' for s in train_stems[2:]))
    (data / 'splits' / 'test.txt').write_text(''.join(s + '\n' for s in test_stems))
    val_stems = (data / 'splits' / 'val.txt').read_text().split()

    log = tmp_path / 'reads.txt'  # a file: dataloader workers append too
    poisoned = set(test_stems)

    def guard(reader):
        def read(path, *args, **kwargs):
            with open(log, 'a') as f:
                f.write(Path(path).stem + '\n')
            if Path(path).stem in poisoned:
                raise RuntimeError(f'test image {path} read during training/selection')
            return reader(path, *args, **kwargs)

        return read

    monkeypatch.setattr(vd, 'read_image', guard(vd.read_image))
    monkeypatch.setattr(vd, 'read_mask', guard(vd.read_mask))

    env = {'SA2VA_MODEL_PATH': str(tiny_checkpoint), 'VESSEL_DATA_ROOT': str(data)}
    monkeypatch.setattr(os, 'environ', {**os.environ, **env})
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora_tiny.py'))
    cfg.merge_from_dict(
        {
            'train_cfg.max_iters': 1,
            'train_cfg.val_interval': 1,
            'param_scheduler': None,
            'default_hooks.checkpoint.interval': 1000,
            'default_hooks.val_visualization': None,
            'default_hooks.validate_before_train': None,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
        }
    )
    assert cfg.val_dataloader.dataset.split == 'val' and cfg.default_hooks.checkpoint.save_best
    cfg.work_dir = str(tmp_path / 'work')
    cfg.experiment_name = f'sel_{uuid.uuid4().hex[:8]}'
    cfg.launcher = 'none'
    train(cfg)

    record = json.loads((tmp_path / 'work' / 'best_checkpoint.json').read_text())
    assert (tmp_path / 'work' / record['checkpoint']).is_file() and record.get('threshold') is not None
    read = set(log.read_text().split())
    assert not read & poisoned
    assert set(val_stems) <= read and read <= set(train_stems[2:]) | set(val_stems)

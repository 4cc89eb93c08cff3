"""Data-loading throughput: ``VesselSegDataset`` + ``vessel_collate`` on synthetic vessels, on CPU.

Writes a synthetic data set (``datasets/synthetic.write_synthetic_dataset``, the code behind
``tools/make_synthetic_vessels.py``) and a tokenizer + config.json folder (the tiny tokenizer, a
preset's config), then times full passes of a DataLoader for each worker count.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..datasets.collate import vessel_collate
from ..datasets.synthetic import write_synthetic_dataset
from ..datasets.tiny_tokenizer import build_tiny_tokenizer
from ..datasets.vessel_dataset import VesselSegDataset
from ..models.presets import official_config


def prepare(root: Path, n: int, size: int, preset: str = 'sa2va-internvl3-2b') -> tuple[Path, Path]:
    data, ckpt = root / f'data_{size}', root / 'tokenizer'
    if not (data / 'splits' / 'train.txt').is_file():
        write_synthetic_dataset(data, n, seed=0, size=size, val_fraction=0.0 if n > 1 else 0.0)
    if not (ckpt / 'config.json').is_file():
        ckpt.mkdir(parents=True, exist_ok=True)
        build_tiny_tokenizer(ckpt)
        config, _ = official_config(preset, vocab_size=1000, dtype='bfloat16')
        (ckpt / 'config.json').write_text(json.dumps(config))
    return data, ckpt


def bench_loader(
    data: Path, ckpt: Path, workers: int, batch_size: int, passes: int = 3, transform: dict | None = None
) -> dict:
    # transform: a config's train transform, e.g. dict(type='VesselAugment', crop_size=1024)
    ds = VesselSegDataset(str(data), 'train', str(ckpt), transform=dict(transform) if transform else None)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=vessel_collate,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )
    for first in loader:  # one untimed pass: worker start-up is not part of the steady rate
        pass
    n_tiles = first['data']['pixel_values'].shape[0] // first['data']['input_ids'].shape[0]
    start, n = time.perf_counter(), 0
    for _ in range(passes):  # persistent workers: later passes reuse them
        for batch in loader:
            n += batch['data']['input_ids'].shape[0]
    elapsed = time.perf_counter() - start
    return {
        'workers': workers,
        'batch_size': batch_size,
        'samples': n,
        'seconds': round(elapsed, 3),
        'samples_per_s': round(n / elapsed, 2),
        'n_tiles': n_tiles,
        'dataset_size': len(ds),
        'transform': transform,
    }


def run_dataload(
    sizes=(512, 1000),
    workers=(0, 2),
    n: int = 64,
    batch_size: int = 8,
    root: str | None = None,
    log=print,
    transform: dict | None = None,
) -> list[dict]:
    torch.set_num_threads(1)  # one core per worker, as a DataLoader worker has
    base = Path(root or tempfile.mkdtemp(prefix='sa2va_dataload_'))
    out = []
    for size in sizes:
        data, ckpt = prepare(base, n, size)
        for w in workers:
            r = bench_loader(data, ckpt, w, batch_size, transform=transform)
            r['image_size'] = size
            log(
                f'dataload size {size} ({r["n_tiles"]} tiles) workers {w} batch {batch_size}'
                f'{" with " + transform["type"] if transform else ""}: {r["samples_per_s"]} samples/s'
            )
            out.append(r)
    return out

#!/usr/bin/env python
"""Default recipe vs the official Sa2VA fine-tune recipe, on the tiny model and synthetic vessels.

    python tools/compare_recipes.py [--out recipe_work] [--iters 200] [--train 12] [--test 8] [--size 512]

Both arms start from the same tiny random checkpoint and see the same training images for the same
number of samples; they differ only where the recipes differ (docs/RECIPE.md, scaled to the tiny
model): mask loss (dense BCE+Dice at 1024 px vs 12,544 importance-sampled points at 256 px),
trainable embeddings ([SEG] rows vs whole embed_tokens/lm_head), warm-up (3% from 1e-3 vs 5% from
1e-5) and global batch (2 vs 8 through accumulation: the official's 32x larger batch, scaled). No
checkpoint or threshold is selected: the final weights of each arm are scored at 0.5 on held-out
images (never seen in training), per vessel width (evaluation/width_metrics.py). Writes
``<out>/comparison.json`` and ``<out>/comparison.md``. CPU, a few minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install
REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = REPO / 'configs' / 'vessel_lora_tiny.py'
ARMS = {
    'default': {},
    'official': {
        'model.mask_loss': 'points',
        'model.point_loss': dict(num_points=12544, oversample_ratio=3.0, importance_sample_ratio=0.75),
        'model.trainable': dict(token_rows=False, embeddings=True),
        'optim_wrapper.accumulative_counts': 4,
    },
}
# each arm's warm-up + cosine (warmup_cosine_schedule's arguments), written out for the run's length
SCHEDULES = {
    'default': dict(warmup_ratio=0.03, warmup_start_factor=1e-3),  # configs/vessel_lora_tiny.py
    'official': dict(warmup_ratio=0.05, warmup_start_factor=1e-5),
}  # configs/vessel_lora_official.py


def train_arm(name: str, out: Path, iters: int, seed: int):
    from mmengine.config import Config

    from projects.sa2va_vessel.engine import train, warmup_cosine_schedule

    cfg = Config.fromfile(str(TINY_CONFIG))
    cfg.merge_from_dict(
        {
            'train_cfg.max_iters': iters,
            'train_cfg.val_interval': iters + 1,
            'param_scheduler': warmup_cosine_schedule(iters, **SCHEDULES[name]) or None,
            'default_hooks.validate_before_train': None,
            'default_hooks.val_visualization': None,
            'default_hooks.checkpoint.interval': iters,
            'default_hooks.checkpoint.save_best': None,
            'default_hooks.best_record': None,
            'val_evaluator': dict(type='VesselSegMetric', _delete_=True),
            'randomness.seed': seed,
            **ARMS[name],
        }
    )
    cfg.work_dir = str(out / name)
    cfg.experiment_name = f'{name}_{uuid.uuid4().hex[:6]}'
    cfg.launcher = 'none'
    return train(cfg)


def score_arm(runner, data: Path, seed: int, size: int, stems: list[str]) -> dict:
    import numpy as np
    from tqdm import tqdm

    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.synthetic import make_vessel_sample, sample_seed
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.engine.utils import unwrap_model
    from projects.sa2va_vessel.evaluation.width_metrics import per_width_counts, scores_from_counts

    model = unwrap_model(runner.model).eval()
    dataset = VesselSegDataset(str(data), 'val', model.model_path, max_dynamic_patch=1, random_question=False)
    totals: dict[str, np.ndarray] = {}
    for i in tqdm(range(len(dataset)), desc='held-out images', unit='image'):
        item = dataset[i]
        prob = model.val_step(vessel_collate([item]))[0]['prob'][0].float().numpy()
        index = int(Path(item['img_path']).stem.split('_')[-1])
        sample = make_vessel_sample(sample_seed(seed, index), size, with_width_map=True)
        for label, counts in per_width_counts(prob, sample.width_map, sample.fov).items():
            totals[label] = totals.get(label, 0) + counts
    return {label: scores_from_counts(c) for label, c in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='recipe_work')
    parser.add_argument('--iters', type=int, default=200, help='training iterations (micro-batches) per arm')
    parser.add_argument('--train', type=int, default=12, help='training images')
    parser.add_argument('--test', type=int, default=8, help='held-out images')
    parser.add_argument('--size', type=int, default=512, help='image side (512: 1-7 px vessels)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--arms', nargs='+', default=list(ARMS), choices=list(ARMS))
    args = parser.parse_args()
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va

    out = (REPO / args.out).resolve()
    checkpoint, data = out / 'tiny_sa2va', out / 'synthetic'
    if not (checkpoint / 'config.json').is_file():
        write_random_sa2va(checkpoint, preset='tiny', seed=0)
    n = args.train + args.test
    train_stems, test_stems = write_synthetic_dataset(
        data, n=n, seed=args.seed, size=args.size, val_fraction=args.test / n
    )
    # the held-out images are the 'val' split; no validation runs during training (val_interval >
    # iters, no validation before training), so nothing is selected on them
    os.environ['SA2VA_MODEL_PATH'], os.environ['VESSEL_DATA_ROOT'] = str(checkpoint), str(data)
    results = {}
    for name in args.arms:
        started = time.time()
        runner = train_arm(name, out, args.iters, args.seed)
        results[name] = {
            'seconds': round(time.time() - started, 1),
            'widths': score_arm(runner, data, args.seed, args.size, test_stems),
        }
    settings = {k: v for k, v in vars(args).items()}
    (out / 'comparison.json').write_text(json.dumps({'settings': settings, 'results': results}, indent=2))
    labels = list(next(iter(results.values()))['widths'])
    lines = [
        '| recipe | ' + ' | '.join(f'Dice {l} | clDice {l}' for l in labels) + ' |',
        '| --- |' + ' --- | --- |' * len(labels),
    ]
    for name, res in results.items():
        cells = [f'{res["widths"][l]["dice"]:.3f} | {res["widths"][l]["cldice"]:.3f}' for l in labels]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    pixels = next(iter(results.values()))['widths']
    lines.append('')
    lines.append('held-out vessel pixels per bin: ' + ', '.join(f'{l}: {pixels[l]["gt_pixels"]}' for l in labels))
    table = '\n'.join(lines)
    (out / 'comparison.md').write_text(table + '\n')
    print(table)


if __name__ == '__main__':
    main()

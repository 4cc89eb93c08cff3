"""Offline evaluation behind ``tools/test.py``: one checkpoint (or exported model) on one split,
in teacher-forced and/or generation mode, written as CSV / JSON / PNG.

Modes:

* ``teacher``: the validation path of training (``model.val_step``: the answer with ``[SEG]``
  is given, the mask comes from the hidden state at ``[SEG]``). On the val split with the same
  config it reproduces the numbers logged during training.
* ``generate``: the model must write the answer itself (greedy, KV cache, from the prompt);
  the mask comes from the step whose input is the generated ``[SEG]``. Samples without
  ``[SEG]`` score as empty masks and are counted (``n_missing_seg``, ``missing_seg_rate``).

Thresholds: ``VesselSegMetric`` reports everything at one operating threshold plus the sweep.
The operating threshold is ``threshold`` when given, else the one recorded in
``best_checkpoint.json`` beside the checkpoint (chosen on val), else the one an export recorded,
else the config's (0.5); ``threshold.py``. The
sweep-best values (``best_thr``/``best_dice``) do not depend on it. On a test split they would
be the test set's own optimum: they are left out (and no threshold curve is drawn) unless
``allow_test_sweep``, and then reported as ``*_optimistic``.

Output (``out_dir``): ``summary.json``; per mode ``<mode>/per_image.csv``,
``<mode>/results_<dataset>_<split>.{csv,md}`` (mean +- sd, bootstrap 95% CI, protocol named),
``<mode>/threshold_curve.png`` and ``<mode>/overlays/<stem>.png`` (image | ground truth |
probability | errors: TP white, FP red, FN blue, outside the FOV grey).
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..models.generation import greedy_seg_generate, stop_token_ids
from . import visualize as V
from .inference import load_eval_model
from .results_table import dataset_name, protocol_name, table_rows, write_results_table
from .stats import DEFAULT_N_BOOT
from .threshold import resolve_threshold
from .vessel_metric import PER_IMAGE_SCORES, VesselSegMetric

logger = logging.getLogger(__name__)

MODES = ('teacher', 'generate')
# Values chosen by sweeping the threshold on the evaluated images themselves.
SWEEP_KEYS = ('vessel/best_thr', 'vessel/best_dice', 'vessel/best_thr_mean', 'vessel/best_dice_mean')
OPTIMISTIC_NOTE = (
    'threshold sweep on the test split: the *_optimistic values pick the threshold on '
    'the images they score, an optimistic bound, not a result'
)


def is_test_split(split: str) -> bool:
    """``test``, ``fold3_test``, ...: a split that only the final evaluation may read."""
    from ..datasets.splits import split_role

    role = split_role(split)
    return role is not None and role[1] == 'test'


def _sweep_policy(metrics: dict, split: str, allow_test_sweep: bool) -> tuple[dict, Optional[str]]:
    """On a test split, drop the sweep-chosen values, or with ``allow_test_sweep`` keep them
    renamed ``*_optimistic``; other splits unchanged. Returns (metrics, note or None)."""
    if not is_test_split(split):
        return metrics, None
    swept = [k for k in metrics if k in SWEEP_KEYS or k.startswith('vessel/global_dice@')]
    if not allow_test_sweep:
        return (
            {k: v for k, v in metrics.items() if k not in swept},
            'threshold sweep refused on the test split (pass --allow-test-sweep for an '
            'optimistic bound); the operating threshold is used as given',
        )
    return ({(f'{k}_optimistic' if k in swept else k): v for k, v in metrics.items()}, OPTIMISTIC_NOTE)


def build_split_dataloader(cfg: Any, split: str, model_path: Optional[str] = None) -> Any:
    """The config's ``val_dataloader`` pointed at ``split`` (``test_dataloader`` when the config
    has one and ``split == 'test'``), built as mmengine builds it."""
    from mmengine.runner import Runner

    from ..registry import project_scope

    source = cfg.get('test_dataloader') if split == 'test' and cfg.get('test_dataloader') else cfg.get('val_dataloader')
    if source is None:
        raise ValueError('the config has no val_dataloader')
    dl_cfg = copy.deepcopy(source)
    dl_cfg['dataset']['split'] = split
    if model_path is not None:  # exported model: its own tokenizer and template
        dl_cfg['dataset']['model_path'] = model_path
    dl_cfg['sampler'] = dict(type='DefaultSampler', shuffle=False)
    with project_scope():  # mmengine builds from its root registries: the project's scope finds ours
        return Runner.build_dataloader(dl_cfg)


def _metric_from_cfg(cfg: Any, threshold: Optional[float]) -> VesselSegMetric:
    ev = copy.deepcopy(cfg.get('val_evaluator') or {})
    if isinstance(ev, (list, tuple)):
        ev = next(e for e in ev if e.get('type') == 'VesselSegMetric')
    kwargs = {k: v for k, v in dict(ev).items() if k != 'type'}
    if threshold is not None:
        kwargs['threshold'] = float(threshold)
    return VesselSegMetric(**kwargs)


def _plain(v: Any) -> Any:
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else v
    return v


def evaluate(
    cfg: Any,
    checkpoint: str,
    split: str = 'val',
    out_dir: Optional[str] = None,
    modes: Sequence[str] = MODES,
    threshold: Optional[float] = None,
    max_new_tokens: int = 32,
    num_overlays: int = 8,
    max_side: int = 1024,
    device: Optional[str] = None,
    allow_test_sweep: bool = False,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> dict:
    """Evaluate and write the outputs (see module docstring); returns the summary dict.

    On a test split the threshold sweep is refused (its best values are left out) unless
    ``allow_test_sweep``, and then they are named ``*_optimistic``.
    """
    for mode in modes:
        if mode not in MODES:
            raise ValueError(f'unknown mode {mode!r}; known: {MODES}')
    model, info = load_eval_model(cfg, checkpoint, device)
    export_path = str(checkpoint) if info['kind'] == 'export' else None
    resolved = resolve_threshold(checkpoint, threshold, default=None, default_source='config')
    threshold, threshold_source, record = resolved.value, resolved.source, resolved.record
    loader = build_split_dataloader(cfg, split, export_path)
    tokenizer = loader.dataset.tokenizer
    stops = stop_token_ids(tokenizer, loader.dataset.template)

    data_root = loader.dataset.data_root
    dataset, protocol = dataset_name(data_root), protocol_name(data_root)
    if is_test_split(split) and threshold_source == 'config':
        logger.warning(
            'evaluating %s without a threshold chosen on val (no best_checkpoint.json, '
            "no --threshold): using the config's %s",
            split,
            _metric_from_cfg(cfg, None).threshold,
        )
    summary: dict[str, Any] = {
        'config': getattr(cfg, 'filename', None),
        'checkpoint': str(checkpoint),
        'checkpoint_kind': info['kind'],
        'split': split,
        'n_samples': len(loader.dataset),
        'dataset': dataset,
        'protocol': protocol,
        'threshold_source': threshold_source,
        'best_record': record,
        'modes': {},
    }
    out = Path(out_dir) if out_dir else None
    for mode in modes:
        start = time.time()
        metric = _metric_from_cfg(cfg, threshold)
        rows: list[dict] = []
        overlays: list[tuple[str, np.ndarray]] = []
        for batch in tqdm(loader, desc=f'{mode} {split}', unit='batch', dynamic_ncols=True):
            if mode == 'teacher':
                preds = model.val_step(batch)
                texts = [''] * len(preds)
            else:
                gen = greedy_seg_generate(model, batch, stops, max_new_tokens=max_new_tokens)
                preds = [{'prob': g['prob'], 'missing_seg': g['missing_seg'], 'n_seg': g['n_seg']} for g in gen]
                texts = [tokenizer.decode(g['generated_ids']) for g in gen]
            before = len(metric.results)
            metric.process(batch, preds)
            for sample, pred, result, text in zip(batch['data_samples'], preds, metric.results[before:], texts):
                for s, m in enumerate(result['masks']):
                    row = {
                        'image': sample['img_path'],
                        'mask_index': s,
                        **{k: _plain(float(m[k])) for k in PER_IMAGE_SCORES},
                        'tp': int(m['counts'][0]),
                        'fp': int(m['counts'][1]),
                        'fn': int(m['counts'][2]),
                        'tn': int(m['counts'][3]),
                    }
                    if mode == 'generate':
                        row['missing_seg'] = bool(pred.get('missing_seg'))
                        row['n_seg'] = int(pred.get('n_seg', 0))
                        row['generated'] = text
                    rows.append(row)
                if out is not None and len(overlays) < num_overlays:
                    mask = np.asarray(sample['mask'])
                    prob = np.zeros(mask.shape, np.float32) if pred.get('missing_seg') else pred['prob'].float().numpy()
                    from ..datasets.readers import read_image

                    try:
                        image = read_image(sample['img_path'])
                    except Exception:
                        image = None
                    overlays.append(
                        (
                            Path(sample['img_path']).stem,
                            V.overlay_panel(image, mask[0], prob[0], metric.threshold, sample.get('fov'), max_side),
                        )
                    )
        metrics = metric.evaluate(len(loader.dataset))
        metrics = {k: _plain(v) for k, v in metrics.items()}
        if mode == 'generate':
            n = max(1, len(loader.dataset))
            metrics['vessel/missing_seg_rate'] = metrics.get('vessel/n_missing_seg', 0) / n
        metrics, sweep_note = _sweep_policy(metrics, split, allow_test_sweep)
        curve = None if sweep_note and not allow_test_sweep else metric.curve
        table = table_rows(
            rows,
            dataset=dataset,
            split=split,
            protocol=protocol,
            mode=mode,
            threshold=metric.threshold,
            n_boot=n_boot,
            seed=seed,
        )
        notes = [
            f'threshold source: {threshold_source}',
            f'nsd tolerance: {metric.nsd_tolerance} px',
            f'clDice skeleton: {metric.skeleton}',
        ] + ([sweep_note] if sweep_note else [])
        summary['modes'][mode] = {
            'metrics': metrics,
            'curve': curve,
            'table': table,
            'notes': notes,
            'seconds': round(time.time() - start, 3),
        }
        if out is not None:
            _write_mode(out / mode, rows, metric, metrics, overlays, curve)
            if table:
                write_results_table(out / mode, table, notes, n_boot=n_boot, seed=seed)
        logger.info(
            '%s: %s', mode, json.dumps({k: metrics[k] for k in metrics if k.endswith(('dice', 'thr', 'missing_seg'))})
        )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'summary.json').write_text(json.dumps(summary, indent=2))
    return summary


def _write_mode(
    folder: Path,
    rows: list[dict],
    metric: VesselSegMetric,
    metrics: dict,
    overlays: list[tuple[str, np.ndarray]],
    curve: Optional[dict],
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if rows:
        with open(folder / 'per_image.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if curve:
        chart = V.draw_curve(
            curve,
            ('global_dice', 'mean_dice', 'global_sens', 'global_precision'),
            threshold=metric.threshold,
            best_threshold=metrics.get('vessel/best_thr', metrics.get('vessel/best_thr_optimistic')),
        )
        V.save_png(chart, str(folder / 'threshold_curve.png'))
    if overlays:
        (folder / 'overlays').mkdir(exist_ok=True)
        for stem, panel in overlays:
            V.save_png(panel, str(folder / 'overlays' / f'{stem}.png'))

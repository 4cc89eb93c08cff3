"""Prediction on a folder of bare images (``tools/predict.py``), with sliding windows for images
larger than the window (FIVES 2048x2048, HRF 3504x2336).

Sliding window: windows of ``window x window`` pixels (clipped to the image), evenly spaced so
that neighbours overlap by at least ``overlap * window`` and the last one ends at the border.
Each window is a separate model input (its own InternVL tiles and 1024 px SAM2 image, so a
1024 window reaches SAM2 at native resolution). Window probabilities are blended with weights
that ramp linearly over the overlap from inside each window and stay 1 at the image border;
the blended map is ``sum_i w_i p_i / sum_i w_i``, so the normalised weights of every pixel sum
to 1 (a constant model gives that constant; a per-pixel model gives its per-pixel output).

Scale: the window defaults to the training crop (``train_dataloader.dataset.transform.crop_size``
of the config, or ``sa2va_vessel.window`` in an export's config.json), so a model trained on
native-resolution crops of N px predicts on windows of N px: the same pixels per SAM2 input and per
InternVL tile as in training. A different ``--window`` is allowed and warned about.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)


DEFAULT_WINDOW = 1024


# ---------------------------------------------------------------------------- windows
def training_window(cfg: Any) -> Optional[int]:
    """The crop size of the config's training transform (``VesselAugment(crop_size=N)``), or None."""
    if cfg is None:
        return None
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    transform = dataset.get('transform') if hasattr(dataset, 'get') else None
    if not isinstance(transform, dict) or transform.get('enabled', True) is False:
        return None
    size = transform.get('crop_size')
    return int(size) if size else None


def export_settings(checkpoint: str | os.PathLike) -> dict:
    """The deployment settings an export recorded in its config.json (``models.export.PROJECT_KEY``:
    val-chosen threshold, tiles, window), or {} for anything else."""
    from ..models.export import PROJECT_KEY

    path = Path(checkpoint) / 'config.json'
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get(PROJECT_KEY) or {})


def export_window(checkpoint: str | os.PathLike) -> Optional[int]:
    """The window recorded in an export's config.json, or None."""
    size = export_settings(checkpoint).get('window')
    return int(size) if size else None


def resolve_window(cfg: Any, checkpoint: str | os.PathLike, window: Optional[int]) -> tuple[int, str]:
    """(window, where it came from): the given one, else the training crop, else 1024."""
    trained = training_window(cfg) or export_window(checkpoint)
    if window is None:
        return (trained, 'training crop') if trained else (DEFAULT_WINDOW, 'default')
    if trained and int(window) != trained:
        logger.warning(
            'window %d differs from the training crop %d: the model sees another scale than it was trained on',
            window,
            trained,
        )
    return int(window), 'command line'


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of ``window`` px covering ``[0, length)``, evenly spaced with at
    least ``overlap * window`` px shared by neighbours, first at 0 and last at ``length - window``."""
    if window < 1:
        raise ValueError(f'window must be >= 1, got {window}')
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f'overlap must be in [0, 1), got {overlap}')
    if length <= window:
        return [0]
    stride = max(1, int(math.floor(window * (1.0 - overlap))))
    n = int(math.ceil((length - window) / stride)) + 1
    return sorted({int(round(s)) for s in np.linspace(0, length - window, n)})


def _ramp(size: int, ramp_lo: int, ramp_hi: int) -> np.ndarray:
    """1-D weights: rising linearly over ``ramp_lo`` px from the start and falling over
    ``ramp_hi`` px to the end, 1 in between; strictly positive everywhere."""
    w = np.ones(size, np.float64)
    i = np.arange(size, dtype=np.float64)
    if ramp_lo > 0:
        w = np.minimum(w, (i + 1.0) / (ramp_lo + 1.0))
    if ramp_hi > 0:
        w = np.minimum(w, (size - i) / (ramp_hi + 1.0))
    return w


def window_weights(height: int, width: int, window: int, overlap: float) -> list[tuple[int, int, int, int, np.ndarray]]:
    """``(y0, x0, h, w, weight (h, w))`` of every window; weights ramp over the overlap with the
    neighbouring windows and are 1 at the image border."""
    out = []
    ys, xs = window_starts(height, window, overlap), window_starts(width, window, overlap)
    h, w = min(window, height), min(window, width)
    for y0 in ys:
        for x0 in xs:
            wy = _ramp(h, _shared(ys, y0, h, before=True), _shared(ys, y0, h, before=False))
            wx = _ramp(w, _shared(xs, x0, w, before=True), _shared(xs, x0, w, before=False))
            out.append((y0, x0, h, w, np.outer(wy, wx)))
    return out


def _shared(starts: list[int], s: int, size: int, before: bool) -> int:
    """Pixels this window shares with its previous (``before``) or next neighbour (0 at the
    image border)."""
    i = starts.index(s)
    if before:
        return 0 if i == 0 else max(0, starts[i - 1] + size - s)
    return 0 if i == len(starts) - 1 else max(0, s + size - starts[i + 1])


def sliding_window_predict(
    image: np.ndarray, predict_fn: Callable[[np.ndarray], np.ndarray], window: int = 1024, overlap: float = 0.25
) -> tuple[np.ndarray, int]:
    """(probabilities (H, W) float32, number of windows) of ``predict_fn`` over ``image``
    (H, W, 3); one call on the whole image when it fits in one window."""
    height, width = image.shape[:2]
    if height <= window and width <= window:
        return np.asarray(predict_fn(image), np.float32), 1
    acc = np.zeros((height, width), np.float64)
    total = np.zeros((height, width), np.float64)
    weights = window_weights(height, width, window, overlap)
    for y0, x0, h, w, wgt in weights:
        prob = np.asarray(predict_fn(image[y0 : y0 + h, x0 : x0 + w]), np.float64)
        if prob.shape != (h, w):
            raise ValueError(f'predict_fn returned {prob.shape} for a {(h, w)} window')
        acc[y0 : y0 + h, x0 : x0 + w] += wgt * prob
        total[y0 : y0 + h, x0 : x0 + w] += wgt
    return (acc / total).astype(np.float32), len(weights)


# ---------------------------------------------------------------------------- the model
class ModelPredictor:
    """``image (H, W, 3) uint8 -> prob (H, W) float32`` with a Sa2VA vessel model.

    ``mode='teacher'`` gives the answer with ``[SEG]`` (the validation path); ``'generate'``
    lets the model write it (missing ``[SEG]`` -> all-zero map, counted in ``missing``).
    """

    def __init__(
        self, model: Any, max_dynamic_patch: Optional[int] = None, mode: str = 'teacher', max_new_tokens: int = 32
    ) -> None:
        from .inference import SampleBuilder, stop_token_ids

        if mode not in ('teacher', 'generate'):
            raise ValueError(f"mode must be 'teacher' or 'generate', got {mode!r}")
        self.model = model
        self.mode = mode
        self.max_new_tokens = max_new_tokens
        self.builder = SampleBuilder(model.model_path, max_dynamic_patch=max_dynamic_patch)
        self.stops = stop_token_ids(self.builder.tokenizer, self.builder.template)
        self.missing = 0

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> np.ndarray:
        from ..datasets.collate import vessel_collate
        from .inference import greedy_seg_generate

        batch = vessel_collate([self.builder(image)])
        if self.mode == 'teacher':
            prob = self.model.val_step(batch)[0]['prob']
        else:
            res = greedy_seg_generate(self.model, batch, self.stops, self.max_new_tokens)[0]
            if res['missing_seg']:
                self.missing += 1
                return np.zeros(image.shape[:2], np.float32)
            prob = res['prob']
        return prob[0].float().cpu().numpy()


def save_probability(prob: np.ndarray, path_stem: Path, prob_format: str = 'png16') -> Path:
    """``<stem>.png`` (uint16, round(p * 65535)) or ``<stem>.npy`` (float32)."""
    if prob_format == 'npy':
        path = path_stem.with_name(path_stem.name + '.npy')  # not with_suffix: stems may hold dots
        np.save(path, prob.astype(np.float32))
    elif prob_format == 'png16':
        path = path_stem.with_name(path_stem.name + '.png')
        arr = np.round(np.clip(prob, 0.0, 1.0) * 65535.0).astype(np.uint16)
        Image.fromarray(arr).save(path)
    else:
        raise ValueError(f'unknown prob_format {prob_format!r}')
    return path


def read_probability(path: str | os.PathLike) -> np.ndarray:
    """Inverse of ``save_probability`` (to 1/65535 for PNG)."""
    path = Path(path)
    if path.suffix == '.npy':
        return np.load(path)
    return np.asarray(Image.open(path), np.float64).astype(np.float32) / 65535.0


def predict_folder(
    cfg: Any,
    checkpoint: str,
    input_dir: str,
    out_dir: str,
    threshold: Optional[float] = None,
    window: Optional[int] = None,
    overlap: float = 0.25,
    prob_format: str = 'png16',
    mode: str = 'teacher',
    max_dynamic_patch: Optional[int] = None,
    device: Optional[str] = None,
) -> dict:
    """Predict every image of ``input_dir``; writes ``prob/``, ``mask/`` (0/255 PNG) and
    ``predictions.json`` under ``out_dir``; returns that manifest. ``window=None``: the training
    crop size (see module docstring)."""
    from tqdm import tqdm

    from ..datasets.files import list_images, split_stem
    from ..datasets.readers import IMAGE_EXTENSIONS, read_image
    from .inference import best_record_for, load_eval_model

    model, info = load_eval_model(cfg, checkpoint, device)
    exported = export_settings(checkpoint)
    if max_dynamic_patch is None and cfg is not None and cfg.get('val_dataloader'):
        max_dynamic_patch = cfg.val_dataloader.dataset.get('max_dynamic_patch')
    if max_dynamic_patch is None:
        max_dynamic_patch = exported.get('max_dynamic_patch')
    window, window_source = resolve_window(cfg, checkpoint, window)
    record = best_record_for(checkpoint)
    source = 'command line'
    if threshold is None:
        if record is not None and record.get('threshold') is not None:
            threshold, source = float(record['threshold']), 'best_checkpoint.json'
        elif exported.get('threshold') is not None:
            threshold, source = float(exported['threshold']), 'export config.json'
        else:
            threshold, source = 0.5, 'default'
    predictor = ModelPredictor(model, max_dynamic_patch=max_dynamic_patch, mode=mode)
    # the dataset's resolver: case-insensitive extensions; two files of one stem are refused,
    # as their outputs (named by stem) would overwrite each other
    images = list_images(input_dir)
    if not images:
        raise FileNotFoundError(f'{input_dir}: no images ({sorted(IMAGE_EXTENSIONS)})')
    out = Path(out_dir)
    (out / 'prob').mkdir(parents=True, exist_ok=True)
    (out / 'mask').mkdir(parents=True, exist_ok=True)
    entries = []
    for path in tqdm(images, desc='predict', unit='image', dynamic_ncols=True):
        image = read_image(path)
        missing_before = predictor.missing
        prob, n_windows = sliding_window_predict(image, predictor, window, overlap)
        stem = split_stem(path.name)[0]
        prob_path = save_probability(prob, out / 'prob' / stem, prob_format)
        mask = np.where(prob >= threshold, 255, 0).astype(np.uint8)
        Image.fromarray(mask).save(out / 'mask' / f'{stem}.png')
        entries.append(
            {
                'image': str(path),
                'size': list(image.shape[:2]),
                'windows': n_windows,
                'prob': str(prob_path),
                'mask': str(out / 'mask' / f'{stem}.png'),
                'missing_seg_windows': predictor.missing - missing_before,
            }
        )
        logger.info('%s: %d window(s), %.2f%% vessel', path.name, n_windows, 100.0 * float((mask > 0).mean()))
    manifest = {
        'checkpoint': str(checkpoint),
        'checkpoint_kind': info['kind'],
        'threshold': threshold,
        'threshold_source': source,
        'mode': mode,
        'window': window,
        'window_source': window_source,
        'overlap': overlap,
        'prob_format': prob_format,
        'images': entries,
    }
    (out / 'predictions.json').write_text(json.dumps(manifest, indent=2))
    return manifest

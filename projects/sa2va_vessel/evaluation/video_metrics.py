"""Metrics over time (``tools/test.py --video``): whole sequences segmented with SAM2 memory.

Per sequence: Dice of every labelled frame, the sequence Dice (pixels pooled over its labelled
frames), and temporal consistency: the mean Dice between consecutive predicted masks (over all
frames), beside the same figure for the ground truth (over consecutive labelled pairs). A model
flickers when its consistency is far below the ground truth's; it is frozen (ignores motion) when
far above.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks; 1 when both are empty."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def temporal_consistency(masks: Sequence[Optional[np.ndarray]]) -> Optional[float]:
    """Mean Dice between consecutive masks (pairs with a missing mask skipped); None without pairs."""
    pairs = [dice(a, b) for a, b in zip(masks, masks[1:]) if a is not None and b is not None]
    return float(np.mean(pairs)) if pairs else None


def sequence_metrics(probs: np.ndarray, gts: Sequence[Optional[np.ndarray]], threshold: float = 0.5) -> dict[str, Any]:
    """Metrics of one sequence: ``probs`` (T, H, W), ``gts`` T masks or None for unlabelled frames."""
    if len(probs) != len(gts):
        raise ValueError(f'{len(probs)} predicted frames but {len(gts)} ground-truth entries')
    preds = [p >= threshold for p in probs]
    per_frame = [None if g is None else dice(p, g) for p, g in zip(preds, gts)]
    labelled = [i for i, g in enumerate(gts) if g is not None]
    inter = sum(int((preds[i] & np.asarray(gts[i], bool)).sum()) for i in labelled)
    total = sum(int(preds[i].sum()) + int(np.asarray(gts[i], bool).sum()) for i in labelled)
    return {
        'n_frames': len(probs),
        'n_labelled': len(labelled),
        'frame_dice': per_frame,
        'mean_frame_dice': float(np.mean([per_frame[i] for i in labelled])) if labelled else None,
        'sequence_dice': (1.0 if total == 0 else 2.0 * inter / total) if labelled else None,
        'temporal_consistency_pred': temporal_consistency(preds),
        'temporal_consistency_gt': temporal_consistency([None if g is None else np.asarray(g, bool) for g in gts]),
    }


def summarise(per_video: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Means over sequences (and over all labelled frames for the frame Dice)."""

    def mean(key: str) -> Optional[float]:
        vals = [m[key] for m in per_video.values() if m[key] is not None]
        return float(np.mean(vals)) if vals else None

    frames = [d for m in per_video.values() for d in m['frame_dice'] if d is not None]
    return {
        'n_videos': len(per_video),
        'n_labelled_frames': len(frames),
        'mean_frame_dice': float(np.mean(frames)) if frames else None,
        'mean_sequence_dice': mean('sequence_dice'),
        'temporal_consistency_pred': mean('temporal_consistency_pred'),
        'temporal_consistency_gt': mean('temporal_consistency_gt'),
    }


def evaluate_videos(
    cfg: Any,
    checkpoint: str,
    split: str = 'val',
    out_dir: Optional[str] = None,
    threshold: Optional[float] = None,
    n_cond: int = 5,
    spacing: str = 'first',
    propagation: str = 'memory',
    device: Optional[str] = None,
) -> dict[str, Any]:
    """Segment every video of ``split`` (frames grouped as ``VesselVideoDataset`` does) and score it."""
    from ..datasets.readers import read_image, read_mask
    from ..datasets.vessel_dataset import read_split
    from ..datasets.video_dataset import find_frame_file as find_file
    from ..datasets.video_dataset import group_frames
    from .inference import best_record_for, load_eval_model
    from .video_predict import VideoSegmenter

    data_root = Path(cfg.val_dataloader.dataset.data_root)
    groups = group_frames(read_split(data_root / 'splits' / f'{split}.txt'), data_root)
    model, info = load_eval_model(cfg, checkpoint, device)
    record = best_record_for(checkpoint)
    if threshold is None:
        threshold = float(record['threshold']) if record and record.get('threshold') is not None else 0.5
    segmenter = VideoSegmenter(model, n_cond=n_cond, spacing=spacing, propagation=propagation)
    per_video, rows = {}, []
    for video, frames in sorted(groups.items()):
        images, gts = [], []
        for _, stem in frames:
            image = find_file(data_root / 'images', stem)
            if image is None:
                raise FileNotFoundError(f'{data_root}: frame {stem} of video {video!r} has no image')
            mask = find_file(data_root / 'masks', stem)
            images.append(read_image(image))
            gts.append(read_mask(mask) if mask is not None else None)
        probs, cond = segmenter(images)
        metrics = sequence_metrics(probs, gts, threshold)
        metrics['conditioning_frames'] = cond
        per_video[video] = metrics
        for (idx, stem), d in zip(frames, metrics['frame_dice']):
            rows.append({'video': video, 'frame': idx, 'stem': stem, 'dice': '' if d is None else f'{d:.6f}'})
        logger.info(
            '%s: sequence Dice %s, consistency %.3f (gt %s)',
            video,
            metrics['sequence_dice'],
            metrics['temporal_consistency_pred'] or float('nan'),
            metrics['temporal_consistency_gt'],
        )
    summary = {
        'checkpoint': str(checkpoint),
        'checkpoint_kind': info['kind'],
        'split': split,
        'threshold': threshold,
        'propagation': propagation,
        'spacing': spacing,
        'key_frames': n_cond,
        'summary': summarise(per_video),
        'videos': per_video,
    }
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / 'video_summary.json').write_text(json.dumps(summary, indent=2))
        with open(out / 'video_frames.csv', 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=['video', 'frame', 'stem', 'dice'])
            writer.writeheader()
            writer.writerows(rows)
    return summary

"""Video segmentation with a trained (or exported) Sa2VA vessel model: ``tools/predict.py --video``.

One LLM pass per sequence: the conditioning frames (the first 5 as the official
``predict_forward(video=...)`` does, or ``n`` evenly spaced key frames) go to the LLM as one tile
each; the ``[SEG]`` embedding (teacher-forced answer, as the project's validation path) prompts
those frames in SAM2; SAM2's memory (``models/video.py``) carries the mask through all frames.
Outputs per frame: ``mask/<name>.png`` (0/255), ``prob/<name>.png|npy`` and an ``overlay.gif``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from PIL import Image

logger = logging.getLogger(__name__)

OVERLAY_COLOUR = (255, 40, 40)


class VideoSegmenter:
    """``frames -> probabilities (T, H, W)`` for a ``Sa2VAVesselModel``."""

    def __init__(
        self,
        model: Any,
        n_cond: int = 5,
        spacing: str = 'first',
        propagation: str = 'memory',
        question: Optional[str] = None,
        answer: Optional[str] = None,
    ) -> None:
        from ..datasets.conversation import DEFAULT_ANSWER, DEFAULT_QUESTION
        from ..datasets.vessel_dataset import checkpoint_inputs, load_tokenizer
        from ..models.video import VideoPropagator, memory_from_passthrough

        self.model = model
        self.n_cond, self.spacing, self.propagation = n_cond, spacing, propagation
        inputs = checkpoint_inputs(model.model_path)
        self.template, self.tokens_per_tile = inputs.template, inputs.tokens_per_tile
        self.tile_size = inputs.image_size
        self.tokenizer = load_tokenizer(model.model_path)
        self.question, self.answer = question or DEFAULT_QUESTION, answer or DEFAULT_ANSWER
        sa2va = model.sa2va
        dtype = next(sa2va.sam2.mask_decoder.parameters()).dtype
        device = next(sa2va.parameters()).device
        memory = memory_from_passthrough(sa2va.arch, model.load_report.passthrough, dtype).to(device).eval()
        self.propagator = VideoPropagator(sa2va, memory)

    @property
    def device(self) -> torch.device:
        return next(self.model.sa2va.parameters()).device

    @torch.no_grad()
    def language_embedding(self, frames: Sequence[np.ndarray], cond: Sequence[int]) -> torch.Tensor:
        """(1, C) ``[SEG]`` embedding of the conditioning frames (one LLM pass)."""
        from ..datasets.conversation import encode_turn, make_question
        from ..datasets.video_inputs import video_pixel_values, video_token_string

        sa2va, model = self.model.sa2va, self.model
        turn = encode_turn(
            self.tokenizer,
            make_question(self.question),
            self.answer,
            n_tiles=len(cond),
            template=self.template,
            tokens_per_tile=self.tokens_per_tile,
            image_string=video_token_string(len(cond), self.tokens_per_tile),
        )
        ids = torch.tensor([turn.input_ids], device=self.device)
        tiles = video_pixel_values([frames[f] for f in cond], self.tile_size).to(self.device)
        embeds = sa2va.mlp1(sa2va.vision_features(tiles).to(sa2va.mlp1.linear_1.weight.dtype))
        inputs = sa2va.splice_image_embeddings(ids, embeds, model.img_context_id)
        n = ids.shape[1]
        hidden = sa2va.llm_last_hidden(
            inputs, torch.ones(1, n, dtype=torch.bool, device=self.device), torch.arange(n, device=self.device)[None]
        )
        seg = hidden[ids == model.seg_token_id]
        if seg.shape[0] != 1:
            raise ValueError(f'the answer {self.answer!r} must hold exactly one [SEG]')
        return sa2va.text_hidden_fcs(seg)

    @torch.no_grad()
    def __call__(self, frames: Sequence[np.ndarray], progress: bool = False) -> tuple[np.ndarray, list[int]]:
        """(probabilities (T, H, W) float32 at frame 0's size, conditioning frame indices)."""
        from ..datasets.video_inputs import video_g_pixel_values
        from ..models.sa2va import mask_logits_to_size
        from ..models.video import conditioning_frames

        cond = conditioning_frames(len(frames), self.n_cond, self.spacing)
        lang = self.language_embedding(frames, cond)
        device = self.device

        def source(t: int) -> torch.Tensor:
            return video_g_pixel_values(frames[t]).to(device)

        result = self.propagator.run(source, len(frames), lang, cond, propagation=self.propagation, progress=progress)
        size = tuple(frames[0].shape[:2])
        probs = [
            mask_logits_to_size(result.mask_logits[t], size).sigmoid()[0].float().cpu().numpy()
            for t in range(len(frames))
        ]
        return np.stack(probs), cond


def overlay_frames(
    frames: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    cond: Sequence[int],
    max_side: int = 512,
    alpha: float = 0.5,
) -> list[Image.Image]:
    """RGB frames with the mask tinted red; conditioning (key) frames get a yellow border."""
    out = []
    for t, (frame, mask) in enumerate(zip(frames, masks)):
        rgb = np.asarray(frame, np.float32)[..., :3].copy()
        m = np.asarray(mask, bool)
        rgb[m] = (1 - alpha) * rgb[m] + alpha * np.asarray(OVERLAY_COLOUR, np.float32)
        rgb = np.clip(rgb, 0, 255).astype(np.uint8)
        if t in cond:
            rgb[:3], rgb[-3:], rgb[:, :3], rgb[:, -3:] = 255, 255, 255, 255
            rgb[:3, :, 2] = rgb[-3:, :, 2] = rgb[:, :3, 2] = rgb[:, -3:, 2] = 0
        img = Image.fromarray(rgb)
        scale = max_side / max(img.size)
        if scale < 1:
            img = img.resize(
                (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BILINEAR
            )
        out.append(img)
    return out


def save_gif(images: Sequence[Image.Image], path: Path, fps: float = 8.0) -> Path:
    images[0].save(path, save_all=True, append_images=list(images[1:]), duration=int(1000 / fps), loop=0)
    return path


def predict_video(
    cfg: Any,
    checkpoint: str,
    source: str,
    out_dir: str,
    threshold: Optional[float] = None,
    prob_format: str = 'png16',
    n_cond: int = 5,
    spacing: str = 'first',
    propagation: str = 'memory',
    fps: float = 8.0,
    device: Optional[str] = None,
) -> dict:
    """Segment one video (frame folder or file); writes mask/, prob/, overlay.gif, video_prediction.json."""
    from ..datasets.video_inputs import read_frames
    from .inference import best_record_for, load_eval_model
    from .predict import save_probability

    frames, names = read_frames(source)
    model, info = load_eval_model(cfg, checkpoint, device)
    record = best_record_for(checkpoint)
    if threshold is None:
        threshold = float(record['threshold']) if record and record.get('threshold') is not None else 0.5
    segmenter = VideoSegmenter(model, n_cond=n_cond, spacing=spacing, propagation=propagation)
    probs, cond = segmenter(frames, progress=True)
    out = Path(out_dir)
    (out / 'prob').mkdir(parents=True, exist_ok=True)
    (out / 'mask').mkdir(parents=True, exist_ok=True)
    masks, entries = [], []
    for name, prob in zip(names, probs):
        mask = prob >= threshold
        masks.append(mask)
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8)).save(out / 'mask' / f'{name}.png')
        prob_path = save_probability(prob, out / 'prob' / name, prob_format)
        entries.append(
            {
                'frame': name,
                'prob': str(prob_path),
                'mask': str(out / 'mask' / f'{name}.png'),
                'vessel_fraction': float(mask.mean()),
            }
        )
    gif = save_gif(overlay_frames(frames, masks, cond), out / 'overlay.gif', fps)
    manifest = {
        'checkpoint': str(checkpoint),
        'checkpoint_kind': info['kind'],
        'source': str(source),
        'n_frames': len(frames),
        'conditioning_frames': cond,
        'spacing': spacing,
        'propagation': propagation,
        'threshold': threshold,
        'overlay': str(gif),
        'frames': entries,
    }
    (out / 'video_prediction.json').write_text(json.dumps(manifest, indent=2))
    logger.info('%s: %d frames, conditioning frames %s, overlay %s', source, len(frames), cond, gif)
    return manifest

"""Offline inference: load a model for evaluation and build samples from bare images (the
generation mode is ``models/generation.py``).

Checkpoints accepted by :func:`load_eval_model` (the formats: ``models/training_checkpoint.py``):

* a training checkpoint file (``iter_N.pth``, ``best_*.pth``; plain runner, or DeepSpeed's
  ``save_optimizer=False`` best file): ``state_dict`` holds the trainable weights only;
* a DeepSpeed checkpoint directory (``iter_N.pth/`` with ``mp_rank_00_model_states.pt``,
  whose ``module`` holds the trainable weights);
* an adapter export (``export_adapter``'s folder);
* an exported directory in the official Sa2VA layout (``config.json`` + safetensors +
  tokenizer): the model is built with ``model_path=DIR`` and nothing is loaded on top.

For the first three the model is built from the config (frozen weights from its ``model_path``)
and every trainable parameter must be in the checkpoint.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Optional

import numpy as np
import torch

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ checkpoints
def load_eval_model(
    cfg: Any, checkpoint: str | os.PathLike, device: Optional[str] = None
) -> tuple[torch.nn.Module, dict]:
    """The model of ``cfg.model`` in eval mode on ``device``, with ``checkpoint`` applied.

    ``cfg`` may be None for an exported directory (a float32 model with the defaults).
    Returns (model, info) with ``info = {'kind', 'checkpoint', 'n_loaded'}``.
    """
    from ..models.training_checkpoint import checkpoint_kind, load_checkpoint
    from ..registry import MODELS

    kind = checkpoint_kind(checkpoint)
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if cfg is not None:
        model_cfg = dict(cfg.model)
    else:
        model_cfg = dict(type='Sa2VAVesselModel', dtype='float32', gradient_checkpointing=False)
    if kind == 'export':
        model_cfg['model_path'] = str(checkpoint)
    if 'model_path' not in model_cfg:
        raise ValueError("the config's model has no model_path; pass --config")
    model = MODELS.build(model_cfg)
    n_loaded = 0
    if kind != 'export':
        _, loaded = load_checkpoint(model, checkpoint)  # strict: every key accounted for
        n_loaded = len(loaded)
    model.to(device)
    model.eval()
    return model, {'kind': kind, 'checkpoint': str(checkpoint), 'n_loaded': n_loaded}


# ------------------------------------------------------------------------- bare images
class ImageSampleBuilder:
    """Dataset items of bare RGB images, built by the dataset's own builder (``datasets/sample.py``),
    so a prediction sees exactly the inputs training and validation saw.

    The prompt is the validation question and answer (``Sure, [SEG].``); the mask is a
    placeholder (all False) because ``vessel_collate`` and the predict path need one. The
    checkpoint's family picks the image inputs: InternVL tiles, or the Qwen-VL processor's patches
    with ``image_grid_thw`` and M-RoPE ids (``datasets.sample.SampleBuilder``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        max_dynamic_patch: Optional[int] = None,
        question: Optional[str] = None,
        answer: Optional[str] = None,
    ) -> None:
        from ..datasets.conversation import DEFAULT_ANSWER, DEFAULT_QUESTION, make_question
        from ..datasets.sample import SampleBuilder

        self.builder = SampleBuilder.from_checkpoint(model_path, max_dynamic_patch)
        self.tokenizer, self.template = self.builder.tokenizer, self.builder.template
        self.question = make_question(question or DEFAULT_QUESTION)
        self.answer = answer or DEFAULT_ANSWER

    def __call__(self, image: np.ndarray, name: str = 'image') -> dict[str, Any]:
        placeholder = np.zeros(image.shape[:2], dtype=bool)
        return self.builder(
            image, placeholder, None, self.question, self.answer, img_path=name, frozen_feature_key=None
        )

"""The one builder of a Sa2VA sample: image + mask + the turn's text -> the dataset item.

``VesselSegDataset`` builds every training and validation item with it, and inference on bare
images (``evaluation/inference.py``) builds its items with it too, so a prediction sees exactly the
inputs training saw: the same tiles (or Qwen-VL patches), the same SAM2 image, the same token ids.

An item (docs/ARCHITECTURE.md, "The batch"): ``pixel_values`` (InternVL: (T, 3, 448, 448) uint8;
Qwen-VL: (gh*gw, 3*T*p*p) float32 patches plus ``image_grid_thw`` (1, 3) and ``position_ids``
(3, L) M-RoPE ids), ``g_pixel_values`` (3, 1024, 1024) uint8, ``input_ids`` / ``labels`` (L,)
int64, ``masks`` (1, H, W) bool, ``n_tiles``, ``img_path``, ``frozen_feature_key``, ``ori_size``
(H, W), ``fov`` (H, W) bool numpy or None, ``pad_token_id``, ``seg_token_id`` and
``image_token_id`` (the tokenizer's [SEG] and image placeholder ids: ``vessel_collate`` finds the
batch's layout with them, ``datasets/batch_layout.py``), ``question``, ``answer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from .checkpoint_config import INTERNVL, CheckpointInputs, checkpoint_inputs
from .conversation import IMG_CONTEXT_TOKEN, QWEN_IMAGE_PAD, SEG_TOKEN, encode_turn, qwen_image_token_string
from .fast_tokenizer import load_fast_tokenizer
from .image_processing import SAM2_SIZE, chw_uint8, sam2_image_uint8, tiles_uint8
from .qwen_image_processing import process_image
from .qwen_positions import rope_index


class SampleBuilder:
    """Items of one checkpoint's input settings and tokenizer (see module docstring).

    Args:
        inputs: the checkpoint's input settings (``checkpoint_config.checkpoint_inputs``).
        tokenizer: its tokenizer (``fast_tokenizer.load_fast_tokenizer``).
    """

    def __init__(self, inputs: CheckpointInputs, tokenizer: Any) -> None:
        self.inputs = inputs
        self.tokenizer = tokenizer
        image_token = IMG_CONTEXT_TOKEN if inputs.family == INTERNVL else QWEN_IMAGE_PAD
        # None where the tokenizer lacks the token (the model then names the problem)
        self.token_ids = {
            'seg_token_id': tokenizer.convert_tokens_to_ids(SEG_TOKEN),
            'image_token_id': tokenizer.convert_tokens_to_ids(image_token),
        }

    @classmethod
    def from_checkpoint(
        cls,
        model_path: str | Path,
        max_dynamic_patch: Optional[int] = None,
        tokenizer_path: Optional[str | Path] = None,
    ) -> 'SampleBuilder':
        """The builder of a checkpoint directory (``max_dynamic_patch`` overrides its own)."""
        return cls(checkpoint_inputs(model_path, max_dynamic_patch), load_fast_tokenizer(tokenizer_path or model_path))

    @property
    def template(self) -> str:
        return self.inputs.template

    def __call__(
        self,
        image: np.ndarray,
        mask: np.ndarray,
        fov: Optional[np.ndarray],
        question: str,
        answer: str,
        img_path: str,
        frozen_feature_key: Optional[str],
    ) -> dict[str, Any]:
        """The item of ``image`` (H, W, 3) uint8 with ``mask`` (H, W) bool; ``question`` is the
        whole user turn (``conversation.make_question``); ``frozen_feature_key`` is the key under
        which the model may cache this image's frozen features (None: never cached)."""
        # raw uint8 pixels: the model normalises them on its device (a quarter of float32's bytes)
        g_pixel_values = chw_uint8(sam2_image_uint8(image, SAM2_SIZE))
        if self.inputs.family == INTERNVL:
            tiles = tiles_uint8(
                image, self.inputs.min_num, self.inputs.max_num, self.inputs.image_size, self.inputs.use_thumbnail
            )
            turn = encode_turn(
                self.tokenizer,
                question,
                answer,
                n_tiles=len(tiles),
                template=self.template,
                tokens_per_tile=self.inputs.tokens_per_tile,
            )
            image_inputs: dict[str, Any] = {
                'pixel_values': chw_uint8(tiles),  # (T, 3, 448, 448) uint8
                'n_tiles': len(tiles),
            }
        else:
            turn, image_inputs = self._qwen_inputs(image, question, answer)
        return {
            **image_inputs,
            'g_pixel_values': g_pixel_values,  # (3, 1024, 1024) uint8
            'input_ids': torch.tensor(turn.input_ids, dtype=torch.long),
            'labels': torch.tensor(turn.labels, dtype=torch.long),
            'masks': torch.from_numpy(np.ascontiguousarray(mask))[None],  # (1, H, W) bool
            'img_path': img_path,
            'frozen_feature_key': frozen_feature_key,
            'ori_size': (int(mask.shape[0]), int(mask.shape[1])),
            'fov': None if fov is None else np.ascontiguousarray(fov),
            'pad_token_id': int(self.tokenizer.pad_token_id),
            **self.token_ids,
            'question': question,
            'answer': answer,
        }

    def _qwen_inputs(self, image: np.ndarray, question: str, answer: str) -> tuple[Any, dict[str, Any]]:
        """A Qwen-VL family turn and image inputs: the processor's patches, expanded image tokens,
        M-RoPE ids."""
        settings = self.inputs.qwen_image
        processed = process_image(image, settings)
        n_tokens = processed.num_image_tokens // settings.merge_size**2
        turn = encode_turn(
            self.tokenizer,
            question,
            answer,
            n_tiles=1,
            template=self.template,
            image_tokens=qwen_image_token_string(n_tokens),
        )
        input_ids = torch.tensor(turn.input_ids, dtype=torch.long)
        position_ids, _ = rope_index(
            self.inputs.mllm_config, self.inputs.family, input_ids[None], processed.image_grid_thw
        )
        return turn, {
            'pixel_values': processed.pixel_values,  # (gh*gw, 3*T*p*p) float32
            'image_grid_thw': processed.image_grid_thw,  # (1, 3) int64
            'position_ids': position_ids[:, 0],  # (3, L) M-RoPE ids
            'n_tiles': 1,
        }

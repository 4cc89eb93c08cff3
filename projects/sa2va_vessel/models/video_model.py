"""Video training: ``Sa2VAVideoVesselModel``, the official Sa2VA video recipe on clips.

One teacher-forced LLM pass per clip (one 448 px tile per frame); the ``[SEG]`` embedding is
broadcast to every frame of the clip and SAM2 decodes each frame on its own (vision features +
``no_mem_embed``, as the official training does: memory attention and the memory encoder are not
used and stay frozen); the mask loss (BCE + Dice at ``loss_resolution``) covers the labelled frames
only. The trainable groups are the image model's, so the gradient-flow guard covers this model
unchanged. ``predict`` returns the labelled frames' probabilities (what the metric scores).
"""

from __future__ import annotations

from typing import Any

import torch

from ..registry import MODELS
from .losses import mask_losses
from .sa2va import mask_logits_to_size
from .vessel_model import Sa2VAVesselModel


@MODELS.register_module()
class Sa2VAVideoVesselModel(Sa2VAVesselModel):
    """``Sa2VAVesselModel`` on ``video_collate`` batches (``frames_per_sample``, ``labelled``)."""

    def _clip_masks(
        self, data: dict, data_samples: list | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        input_ids = data['input_ids']
        frames = data['frames_per_sample'].to(input_ids.device)
        image_embeds = self.image_embeddings(data['pixel_values'], input_ids, data_samples)
        inputs_embeds = self.sa2va.splice_image_embeddings(input_ids, image_embeds, self.img_context_id)
        hidden = self.sa2va.llm_last_hidden(inputs_embeds, data['attention_mask'], data['position_ids'])
        is_seg = input_ids == self.seg_token_id
        per_sample = is_seg.sum(dim=1)
        if bool((per_sample != 1).any()):
            raise ValueError(f'a video clip needs exactly one [SEG] (one object); counts: {per_sample.tolist()}')
        language = self.sa2va.text_hidden_fcs(hidden[is_seg])  # (B, C)
        language = language.repeat_interleave(frames, dim=0)  # one per frame
        fpn = self.sam2_features(data['g_pixel_values'], self._frame_keys(data_samples))  # frozen, no grad
        image_embed, high_res = self.sa2va.sam2_decoder_inputs(fpn)
        decoded = self.sa2va.decode_masks(image_embed, high_res, language)
        return hidden, frames, decoded

    @staticmethod
    def _frame_keys(data_samples: list | None) -> list | None:
        """One frozen-feature cache key per frame (its file), for the SAM2 feature cache."""
        if not data_samples or any('frame_paths' not in s for s in data_samples):
            return None
        return [{'frozen_feature_key': path} for s in data_samples for path in s['frame_paths']]

    def loss(self, data: dict, data_samples: list | None = None) -> dict[str, torch.Tensor]:
        self.begin_training_step()
        hidden, _, decoded = self._clip_masks(data, data_samples)
        labelled = torch.cat(data['labelled']).to(decoded['mask_logits'].device)
        logits = decoded['mask_logits']
        if bool(labelled.any()):
            gt = [m[lab] for m, lab in zip(data['masks'], data['labelled']) if bool(lab.any())]
            losses = mask_losses(
                logits[labelled], gt, self.loss_resolution, self.mask_loss_weight, self.dice_loss_weight
            )
        else:  # a batch of unlabelled clips: no mask loss, the graph stays connected
            zero = logits.sum() * 0.0
            losses = {'loss_mask': zero, 'loss_dice': zero.clone()}
        losses['loss_llm'] = self.llm_loss_weight * self.llm_loss(hidden, data['labels'])
        return losses

    def predict(self, data: dict, data_samples: list | None = None) -> list[dict[str, Any]]:
        """Per clip: ``prob`` (labelled frames, H, W) and ``prob_all`` (every frame of the clip)."""
        _, frames, decoded = self._clip_masks(data, data_samples)
        results = []
        for i, logits in enumerate(torch.split(decoded['mask_logits'], frames.tolist())):
            size = tuple(data_samples[i]['ori_size']) if data_samples else tuple(data['masks'][i].shape[-2:])
            prob = mask_logits_to_size(logits, size).sigmoid().cpu()
            results.append({'prob': prob[data['labelled'][i].cpu()], 'prob_all': prob})
        return results

"""The two reference training steps the benchmark measures beside the project's own.

(b) plain composition: what a user writes from transformers' InternVL/Qwen2/Sam2 classes and
peft with no project-specific levers: the full ``Qwen2ForCausalLM`` forward with ``labels`` (logits
over the whole vocabulary at every position, transformers' loss), ``output_hidden_states`` for the
[SEG] state, the frozen encoders called plainly every step, gradient checkpointing on, AdamW with
its defaults. It runs on the same modules (same weights, same LoRA) as the project's model, so the
two give the same loss on the same batch. The Qwen-VL families: the vision tower + merger(s), then
the text model + ``lm_head`` the same way (``*ForConditionalGeneration``'s language half: full-
vocabulary logits, transformers' loss, ``hidden_states[-1]`` as the [SEG] state: post-norm for
Qwen2.5-VL, pre-norm for Qwen3-VL, exactly what the official code reads), with the batch's M-RoPE
ids and Qwen3-VL's DeepStack embeddings.

(a) the official recipe's settings: trainable weights (LoRA, projector, text_hidden_fcs, mask
decoder) in fp32 under bf16 autocast, ``embed_tokens`` and ``lm_head`` fully trainable in fp32, the
mask loss BCE + Dice at 112*112 = 12,544 points of the 256x256 logits chosen by importance sampling
(3x oversampled candidates, the 75% least certain by |logit|, 25% uniform: ``models.losses.
point_sampled_mask_losses``), gradient checkpointing on, full-vocabulary logits.
"""

from __future__ import annotations

import torch

from ..models.losses import mask_losses, point_sampled_mask_losses


def plain_forward(model, data: dict, timer=None, mask_loss: str = 'project') -> dict[str, torch.Tensor]:
    """Loss dict of the plain composition on ``model.sa2va`` (see module docstring)."""
    s = model.sa2va
    t = timer or _NoTimer()
    input_ids = data['input_ids']
    extra = {}
    with t.stage('vision'):
        if model.is_qwen:
            image_embeds, deepstack = s.image_embeddings(data['pixel_values'], data['image_grid_thw'])
            if deepstack is not None:
                extra = dict(deepstack_visual_embeds=deepstack, visual_pos_masks=input_ids == s.image_token_id)
        else:
            features = s.vision_features(data['pixel_values'])
            image_embeds = s.mlp1(features.to(s.mlp1.linear_1.weight.dtype))
    if model.is_qwen:
        inputs_embeds = s.splice_image_embeddings(input_ids, image_embeds)
    else:
        inputs_embeds = s.splice_image_embeddings(input_ids, image_embeds, model.img_context_id)
    with t.stage('llm_fwd'):
        out = s.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=data['attention_mask'],
            position_ids=data['position_ids'],
            labels=data['labels'],
            output_hidden_states=True,
            use_cache=False,
            **extra,
        )
        hidden = out.hidden_states[-1]
    t.llm_backward_hooks(inputs_embeds, hidden)
    is_seg = input_ids == model.seg_token_id
    seg_per_sample = is_seg.sum(dim=1)
    language_embeds = s.text_hidden_fcs(hidden[is_seg])
    with t.stage('sam2_encoder'):
        fpn = s.sam2_backbone(data['g_pixel_values'])
    with t.stage('decoder'):
        image_embed, high_res = s.sam2_decoder_inputs(fpn)
        image_embed = image_embed.repeat_interleave(seg_per_sample, dim=0)
        high_res = [h.repeat_interleave(seg_per_sample, dim=0) for h in high_res]
        decoded = s.decode_masks(image_embed, high_res, language_embeds)
    with t.stage('loss'):
        if mask_loss == 'points':
            losses = point_sampled_mask_losses(
                decoded['mask_logits'], data['masks'], model.mask_loss_weight, model.dice_loss_weight
            )
        else:
            losses = mask_losses(
                decoded['mask_logits'],
                data['masks'],
                model.loss_resolution,
                model.mask_loss_weight,
                model.dice_loss_weight,
            )
        losses['loss_llm'] = model.llm_loss_weight * out.loss
    return losses


def make_official(model) -> list[torch.nn.Parameter]:
    """Turn a freshly built Sa2VAVesselModel (token_rows off) into the official recipe's trainable set.

    The trainable groups go to fp32; ``embed_tokens`` and ``lm_head`` become fully trainable fp32
    matrices. Returns the trainable parameters.
    """
    lm = model.sa2va.language_model
    for p in model.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    for module in {lm.get_input_embeddings(), lm.get_output_embeddings()}:
        module.weight.data = module.weight.data.float()
        module.weight.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


class _NoTimer:
    def stage(self, name):
        import contextlib

        return contextlib.nullcontext()

    def llm_backward_hooks(self, inputs_embeds, hidden):
        pass

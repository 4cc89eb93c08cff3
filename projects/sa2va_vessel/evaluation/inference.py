"""Offline inference: load a model for evaluation, build samples from bare images, and the
generation mode (the model must emit ``[SEG]`` itself).

Checkpoints accepted by :func:`load_eval_model`:

* a training checkpoint file (``iter_N.pth``, ``best_*.pth``; plain runner, or DeepSpeed's
  ``save_optimizer=False`` best file): ``state_dict`` holds the trainable weights only;
* a DeepSpeed checkpoint directory (``iter_N.pth/`` with ``mp_rank_00_model_states.pt``,
  whose ``module`` holds the trainable weights);
* an exported directory in the official Sa2VA layout (``config.json`` + safetensors +
  tokenizer): the model is built with ``model_path=DIR`` and nothing is loaded on top.

For the first two the model is built from the config (frozen weights from its ``model_path``)
and every trainable parameter must be in the checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ checkpoints
def checkpoint_kind(path: str | os.PathLike) -> str:
    """'export' (official-layout dir), 'deepspeed' (DeepSpeed dir) or 'file' (a .pth file);
    a work dir resolves through its ``last_checkpoint`` (``models.export.resolve_checkpoint``)."""
    from ..models.export import resolve_checkpoint

    p = Path(path)
    if p.is_dir() and (p / 'config.json').is_file():
        return 'export'
    return 'deepspeed' if resolve_checkpoint(p).is_dir() else 'file'


def read_trainable_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict, meta) of a training checkpoint file or DeepSpeed directory (the export
    side's strict reader, ``models.export.read_training_state``)."""
    from ..models.export import read_training_state

    if checkpoint_kind(path) == 'export':
        raise ValueError(f'{path} is an exported model directory, not a training checkpoint')
    return read_training_state(path)


def config_from_checkpoint(path: str | os.PathLike) -> Any:
    """The mmengine config saved in a training checkpoint's meta (``cfg``), or None."""
    from mmengine.config import Config

    try:
        _, meta = read_trainable_state(path)
    except Exception:  # not a training checkpoint (or unreadable): no saved config
        return None
    text = meta.get('cfg')
    if not text:
        return None
    return Config.fromstring(text, file_format='.py')


def best_record_for(checkpoint: str | os.PathLike) -> Optional[dict]:
    """``best_checkpoint.json`` beside ``checkpoint`` when it describes this checkpoint."""
    from ..engine.monitor_hooks import BEST_RECORD

    p = Path(checkpoint)
    record_path = p.parent / BEST_RECORD
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    return record if record.get('checkpoint') == p.name else None


def load_eval_model(
    cfg: Any, checkpoint: str | os.PathLike, device: Optional[str] = None
) -> tuple[torch.nn.Module, dict]:
    """The model of ``cfg.model`` in eval mode on ``device``, with ``checkpoint`` applied.

    ``cfg`` may be None for an exported directory (a float32 model with the defaults).
    Returns (model, info) with ``info = {'kind', 'checkpoint', 'n_loaded'}``.
    """
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
        from ..models.export import load_trainable_state

        state, _ = read_trainable_state(checkpoint)
        load_trainable_state(model, state, str(checkpoint))  # strict: every key accounted for
        n_loaded = len(state)
    model.to(device)
    model.eval()
    return model, {'kind': kind, 'checkpoint': str(checkpoint), 'n_loaded': n_loaded}


# ------------------------------------------------------------------------- bare images
class SampleBuilder:
    """Dataset-like samples (the ``VesselSegDataset`` item layout) from a bare RGB image.

    The prompt is the validation question and answer (``Sure, [SEG].``); the mask is a
    placeholder (all False) because ``vessel_collate`` and the predict path need one. The
    checkpoint's family picks the image inputs: InternVL tiles, or the Qwen-VL processor's patches
    with ``image_grid_thw`` and M-RoPE ids (``datasets.vessel_dataset.qwen_sample_inputs``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike,
        max_dynamic_patch: Optional[int] = None,
        question: Optional[str] = None,
        answer: Optional[str] = None,
    ) -> None:
        from ..datasets.conversation import DEFAULT_ANSWER, DEFAULT_QUESTION
        from ..datasets.vessel_dataset import checkpoint_inputs, load_tokenizer

        inputs = checkpoint_inputs(model_path, max_dynamic_patch)
        self.inputs = inputs
        self.template = inputs.template
        self.image_size, self.use_thumbnail = inputs.image_size, inputs.use_thumbnail
        self.min_num, self.max_num = inputs.min_num, inputs.max_num
        self.tokens_per_tile = inputs.tokens_per_tile
        self.tokenizer = load_tokenizer(model_path)
        self.question = question or DEFAULT_QUESTION
        self.answer = answer or DEFAULT_ANSWER

    def __call__(self, image: np.ndarray, name: str = 'image') -> dict[str, Any]:
        from ..datasets.conversation import encode_turn, make_question
        from ..datasets.image_processing import (
            SAM2_SIZE,
            normalise_sam2,
            normalise_tiles,
            sam2_image_uint8,
            tiles_uint8,
        )
        from ..datasets.vessel_dataset import qwen_sample_inputs

        question = make_question(self.question)
        if self.inputs.family != 'internvl':
            turn, image_inputs = qwen_sample_inputs(image, self.inputs, self.tokenizer, question, self.answer)
        else:
            tiles = tiles_uint8(image, self.min_num, self.max_num, self.image_size, self.use_thumbnail)
            turn = encode_turn(
                self.tokenizer,
                question,
                self.answer,
                n_tiles=len(tiles),
                template=self.template,
                tokens_per_tile=self.tokens_per_tile,
            )
            image_inputs = {'pixel_values': normalise_tiles(tiles), 'n_tiles': len(tiles)}
        h, w = image.shape[:2]
        return {
            **image_inputs,
            'g_pixel_values': normalise_sam2(sam2_image_uint8(image, SAM2_SIZE)),
            'input_ids': torch.tensor(turn.input_ids, dtype=torch.long),
            'labels': torch.tensor(turn.labels, dtype=torch.long),
            'masks': torch.zeros((1, h, w), dtype=torch.bool),
            'img_path': name,
            'frozen_feature_key': None,
            'ori_size': (h, w),
            'fov': None,
            'pad_token_id': int(self.tokenizer.pad_token_id),
        }


# ------------------------------------------------------------------------------ generation
def stop_token_ids(tokenizer: Any, template: str) -> set[int]:
    """EOS and the template's stop words as token ids."""
    from ..datasets.conversation import get_template

    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    for word in get_template(template).get('STOP_WORDS', []):
        tid = tokenizer.convert_tokens_to_ids(word)
        if isinstance(tid, int) and tid != tokenizer.unk_token_id:
            ids.add(tid)
    return ids


def _prompt_length(labels: torch.Tensor, n: int) -> int:
    """Tokens before the first labelled one (the answer the model would otherwise be given)."""
    answer_at = torch.nonzero(labels[:n] != -100)
    return int(answer_at[0]) if answer_at.numel() else n


def _internvl_prompts(
    model: Any, d: dict, samples: Any, prompts: list[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, dict]]:
    """Per prompt: (inputs_embeds, 1-D position ids, rope delta 0, no extra LLM arguments)."""
    sa2va = model.sa2va
    image_embeds = model.image_embeddings(d['pixel_values'], d['input_ids'], samples)  # (T, 256, C)
    per_tile, tile0 = image_embeds.shape[1], 0
    for prompt in prompts:
        n_tiles = int((prompt == model.img_context_id).sum()) // per_tile
        embeds = sa2va.splice_image_embeddings(prompt, image_embeds[tile0 : tile0 + n_tiles], model.img_context_id)
        tile0 += n_tiles
        yield embeds, torch.arange(prompt.shape[1], device=prompt.device)[None], 0, {}


def _qwen_prompts(
    model: Any, d: dict, prompts: list[torch.Tensor]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, int, dict]]:
    """Per prompt: (inputs_embeds, (3, 1, L) M-RoPE ids, rope delta, DeepStack arguments of Qwen3-VL).

    The ids and delta are ``get_rope_index``'s on the prompt alone, as transformers' prefill computes them.
    """
    sa2va = model.sa2va
    grid = d['image_grid_thw']
    embeds, deepstack = sa2va.image_embeddings(d['pixel_values'], grid)
    counts = (grid.prod(dim=-1) // sa2va.arch.vision.spatial_merge_size**2).tolist()
    start = 0
    for i, prompt in enumerate(prompts):
        rows = slice(start, start + counts[i])
        start += counts[i]
        inputs_embeds = sa2va.splice_image_embeddings(prompt, embeds[rows])
        positions, delta = sa2va.rope_position_ids(prompt, grid[i : i + 1], torch.ones_like(prompt))
        extra = (
            {}
            if deepstack is None
            else dict(deepstack=[level[rows] for level in deepstack], visual_pos_masks=prompt == sa2va.image_token_id)
        )
        yield inputs_embeds, positions, int(delta.reshape(-1)[0]), extra


@torch.no_grad()
def greedy_seg_generate(
    model: Any,
    batch: dict,
    stop_ids: Sequence[int],
    max_new_tokens: int = 32,
    forced_answers: Optional[Sequence[Sequence[int]]] = None,
) -> list[dict[str, Any]]:
    """Generation mode: greedy decoding with a KV cache from each sample's prompt; the mask
    comes from the last-layer hidden state of the step whose INPUT is ``[SEG]`` (the official
    ``get_seg_hidden_states`` alignment, golden README quirk 1), the state each family's
    ``llm_last_hidden`` returns (post-norm; Qwen3-VL pre-norm).

    Every family: InternVL with 1-D positions; Qwen2.5-VL / Qwen3-VL with the M-RoPE ids of the
    prompt from ``get_rope_index`` and, for each new token, ``cache position + rope delta`` in all
    three rows (``decode_position_ids``), as transformers' own generation does.

    ``batch`` is a ``vessel_collate`` output; the prompt of a sample is its ``input_ids`` up to
    the first labelled token (the answer the model would otherwise be given). Per sample:
    ``{'prob': (S, H, W) float32 or None, 'missing_seg': bool, 'n_seg': int,
    'generated_ids': list[int]}``. ``missing_seg`` when fewer ``[SEG]`` than ground-truth masks
    were emitted (the sample then scores as empty masks). ``forced_answers`` replaces argmax by
    the given token ids (teacher forcing through the cache; used to check the alignment).
    """
    data = model.data_preprocessor(batch, False)
    with model.autocast_context(data['data']):  # fp32 trainables over a bf16 base, as in forward
        return _greedy_decode(
            model, batch, data['data'], data['data_samples'], stop_ids, max_new_tokens, forced_answers
        )


def _greedy_decode(
    model: Any,
    batch: dict,
    d: dict,
    samples: Any,
    stop_ids: Sequence[int],
    max_new_tokens: int,
    forced_answers: Optional[Sequence[Sequence[int]]],
) -> list[dict[str, Any]]:
    from transformers import DynamicCache

    from ..models.sa2va import mask_logits_to_size

    sa2va = model.sa2va
    lm = sa2va.language_model
    embed = lm.get_input_embeddings()
    input_ids, labels, attn = d['input_ids'], d['labels'], d['attention_mask']
    prompts = []
    for i in range(input_ids.shape[0]):
        n = int(attn[i].sum())
        prompts.append(input_ids[i, : _prompt_length(labels[i], n)][None])
    per_prompt = _qwen_prompts(model, d, prompts) if model.is_qwen else _internvl_prompts(model, d, samples, prompts)
    fpn = model.sam2_features(d['g_pixel_values'], samples)
    image_embed, high_res = sa2va.sam2_decoder_inputs(fpn)
    stop = set(int(s) for s in stop_ids)
    results = []
    for i, (prompt, (embeds, positions, delta, extra)) in enumerate(zip(prompts, per_prompt)):
        device, length = prompt.device, prompt.shape[1]
        cache = DynamicCache()
        hidden = sa2va.llm_last_hidden(
            embeds, torch.ones_like(prompt, dtype=torch.bool), positions, past_key_values=cache, **extra
        )[:, -1]
        generated: list[int] = []
        seg_hidden: list[torch.Tensor] = []
        forced = None if forced_answers is None else list(forced_answers[i])
        for step in range(max_new_tokens):
            if forced is not None:
                if step >= len(forced):
                    break
                token = int(forced[step])
            else:
                token = int(lm.lm_head(sa2va.logits_hidden(hidden)).float().argmax(-1)[0])
            generated.append(token)
            if token in stop:
                break
            tok = torch.tensor([[token]], device=device)
            index = length + step  # the new token's sequence index = the cache length
            hidden = sa2va.llm_last_hidden(
                embed(tok),
                torch.ones((1, index + 1), dtype=torch.bool, device=device),
                sa2va.decode_position_ids(index, delta, device),
                past_key_values=cache,
            )[:, -1]
            if token == model.seg_token_id:
                seg_hidden.append(hidden)  # the step whose input is [SEG]
        n_masks = len(batch['data']['masks'][i]) if 'masks' in batch['data'] else 1
        record = {
            'generated_ids': generated,
            'n_seg': len(seg_hidden),
            'missing_seg': len(seg_hidden) < n_masks,
            'prob': None,
        }
        if not record['missing_seg']:
            lang = sa2va.text_hidden_fcs(torch.cat(seg_hidden[:n_masks], dim=0))  # (S, C)
            decoded = sa2va.decode_masks(
                image_embed[i : i + 1].expand(n_masks, -1, -1, -1),
                [h[i : i + 1].expand(n_masks, -1, -1, -1) for h in high_res],
                lang,
            )
            size = (
                tuple(samples[i]['ori_size'])
                if samples and 'ori_size' in samples[i]
                else tuple(d['masks'][i].shape[-2:])
            )
            record['prob'] = mask_logits_to_size(decoded['mask_logits'], size).sigmoid().cpu()
        results.append(record)
    return results

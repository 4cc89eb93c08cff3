"""Generation mode: greedy decoding with a KV cache, where the model must write ``[SEG]`` itself.

Used by validation (``engine/val_loop.py``), ``tools/test.py --mode generate`` and
``tools/predict.py --mode generate``. Only the model's public stages are called
(``image_embeddings``, ``sam2_features``, the modules' ``splice_image_embeddings``,
``llm_last_hidden``, ``sam2_decoder_inputs``, ``text_hidden_fcs`` and ``decode_masks``).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import torch
from transformers import DynamicCache

from ..datasets.conversation import get_template
from .sa2va import mask_logits_to_size


def stop_token_ids(tokenizer: Any, template: str) -> set[int]:
    """EOS and the template's stop words as token ids."""
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

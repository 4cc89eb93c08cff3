"""Generation mode: greedy decoding with a KV cache, where the model must write ``[SEG]`` itself.

Used by validation (``engine/val_loop.py``), ``tools/test.py --mode generate`` and
``tools/predict.py --mode generate``. Only the model's public stages are called
(``image_embeddings``, ``sam2_features``, the modules' ``splice_image_embeddings``,
``sam2_decoder_inputs``, ``text_hidden_fcs`` and ``decode_masks``).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch

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


@torch.no_grad()
def greedy_seg_generate(model: Any, batch: dict, stop_ids: Sequence[int],
                        max_new_tokens: int = 32,
                        forced_answers: Optional[Sequence[Sequence[int]]] = None
                        ) -> list[dict[str, Any]]:
    """Generation mode: greedy decoding with a KV cache from each sample's prompt; the mask
    comes from the last-layer (post-norm) hidden state of the step whose INPUT is ``[SEG]``
    (the official ``get_seg_hidden_states`` alignment, golden README quirk 1).

    ``batch`` is a ``vessel_collate`` output; the prompt of a sample is its ``input_ids`` up to
    the first labelled token (the answer the model would otherwise be given). Per sample:
    ``{'prob': (S, H, W) float32 or None, 'missing_seg': bool, 'n_seg': int,
    'generated_ids': list[int]}``. ``missing_seg`` when fewer ``[SEG]`` than ground-truth masks
    were emitted (the sample then scores as empty masks). ``forced_answers`` replaces argmax by
    the given token ids (teacher forcing through the cache; used to check the alignment).
    """
    data = model.data_preprocessor(batch, False)
    d, samples = data['data'], data['data_samples']
    sa2va = model.sa2va
    lm = sa2va.language_model
    embed = lm.get_input_embeddings()
    input_ids, labels, attn = d['input_ids'], d['labels'], d['attention_mask']
    image_embeds = model.image_embeddings(d['pixel_values'], input_ids, samples)  # (T, 256, C)
    per_tile = image_embeds.shape[1]
    fpn = model.sam2_features(d['g_pixel_values'], samples)
    image_embed, high_res = sa2va.sam2_decoder_inputs(fpn)
    stop = set(int(s) for s in stop_ids)
    results, tile0 = [], 0
    for i in range(input_ids.shape[0]):
        n = int(attn[i].sum())
        ids, lab = input_ids[i, :n], labels[i, :n]
        answer_at = torch.nonzero(lab != -100)
        prompt_len = int(answer_at[0]) if answer_at.numel() else n
        prompt = ids[:prompt_len][None]
        n_tiles = int((prompt == model.img_context_id).sum()) // per_tile
        embeds = sa2va.splice_image_embeddings(prompt, image_embeds[tile0:tile0 + n_tiles],
                                               model.img_context_id)
        tile0 += n_tiles
        out = lm.model(inputs_embeds=embeds, use_cache=True,
                       position_ids=torch.arange(prompt_len, device=ids.device)[None])
        cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]
        generated: list[int] = []
        seg_hidden: list[torch.Tensor] = []
        forced = None if forced_answers is None else list(forced_answers[i])
        for step in range(max_new_tokens):
            if forced is not None:
                if step >= len(forced):
                    break
                token = int(forced[step])
            else:
                token = int(lm.lm_head(hidden).float().argmax(-1)[0])
            generated.append(token)
            if token in stop:
                break
            tok = torch.tensor([[token]], device=ids.device)
            out = lm.model(inputs_embeds=embed(tok), past_key_values=cache, use_cache=True,
                           position_ids=torch.tensor([[prompt_len + step]], device=ids.device))
            cache, hidden = out.past_key_values, out.last_hidden_state[:, -1]
            if token == model.seg_token_id:
                seg_hidden.append(hidden)   # the step whose input is [SEG]
        n_masks = len(batch['data']['masks'][i]) if 'masks' in batch['data'] else 1
        record = {'generated_ids': generated, 'n_seg': len(seg_hidden),
                  'missing_seg': len(seg_hidden) < n_masks, 'prob': None}
        if not record['missing_seg']:
            lang = sa2va.text_hidden_fcs(torch.cat(seg_hidden[:n_masks], dim=0))  # (S, C)
            decoded = sa2va.decode_masks(image_embed[i:i + 1].expand(n_masks, -1, -1, -1),
                                         [h[i:i + 1].expand(n_masks, -1, -1, -1) for h in high_res],
                                         lang)
            size = tuple(samples[i]['ori_size']) if samples and 'ori_size' in samples[i] \
                else tuple(d['masks'][i].shape[-2:])
            record['prob'] = mask_logits_to_size(decoded['mask_logits'], size).sigmoid().cpu()
        results.append(record)
    return results

"""Synthetic training batches for the Qwen-VL Sa2VA families (the batch of docs/QWEN_VL.md).

Token sequences are real conversations encoded with the project's tiny tokenizer of the family,
whose added tokens sit at the end of the vocabulary in the real order, shifted onto the model's
vocabulary by a constant offset; the image run has ``gh * gw / 4`` ``<|image_pad|>`` tokens for
the grid the Qwen-VL processor would give an image of ``image_hw`` (Sa2VA's pixel limits);
M-RoPE ids come from transformers' ``get_rope_index``. Patches and SAM2 pixels are random normal.
"""

from __future__ import annotations

import random

import torch
from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

from ..datasets.batch_layout import batch_layout
from ..datasets.conversation import SEG_ANSWERS, VESSEL_QUESTIONS, encode_turn, make_question, qwen_image_token_string
from ..datasets.qwen_image_processing import SA2VA_MAX_PIXELS, SA2VA_MIN_PIXELS
from ..datasets.qwen_positions import rope_index
from ..datasets.tiny_tokenizer import added_tokens_for
from .synthetic import thin_lines, tiny_tokenizer


def make_qwen_batch(
    model, batch_size: int, image_hw: tuple[int, int], device: torch.device | str, seed: int = 0, key_prefix: str = 'b0'
) -> dict:
    """One collated Qwen-VL batch ``{'data', 'data_samples', 'meta'}`` for ``model`` on ``device``."""
    arch = model.sa2va.arch
    family, vision = arch.family, arch.vision
    h, w = image_hw
    factor = vision.patch_size * vision.spatial_merge_size
    rh, rw = smart_resize(h, w, factor=factor, min_pixels=SA2VA_MIN_PIXELS, max_pixels=SA2VA_MAX_PIXELS)
    gh, gw = rh // vision.patch_size, rw // vision.patch_size
    n_tokens = gh * gw // vision.spatial_merge_size**2
    tok = tiny_tokenizer(family)
    n_added = len(added_tokens_for(family))
    offset = arch.llm.vocab_size - len(tok)
    if offset < 0:
        raise ValueError(f'vocabulary {arch.llm.vocab_size} smaller than the tiny tokenizer ({len(tok)})')
    shift = lambda ids: [i + offset if i >= len(tok) - n_added else i for i in ids]  # noqa: E731
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(batch_size):
        turn = encode_turn(
            tok,
            make_question(rng.choice(VESSEL_QUESTIONS)),
            rng.choice(SEG_ANSWERS),
            n_tiles=1,
            template=arch.template,
            image_tokens=qwen_image_token_string(n_tokens),
        )
        seqs.append((shift(turn.input_ids), shift(turn.labels)))
    length = max(len(s[0]) for s in seqs)
    pad = len(tok) - n_added + offset  # <|endoftext|>
    input_ids = torch.full((batch_size, length), pad, dtype=torch.long)
    labels = torch.full((batch_size, length), -100, dtype=torch.long)
    attention_mask = torch.zeros((batch_size, length), dtype=torch.bool)
    for i, (ids, lab) in enumerate(seqs):
        input_ids[i, : len(ids)], labels[i, : len(ids)] = torch.tensor(ids), torch.tensor(lab)
        attention_mask[i, : len(ids)] = True
    grid = torch.tensor([[1, gh, gw]] * batch_size, dtype=torch.long)
    position_ids, _ = rope_index(arch.mllm, family, input_ids, grid, attention_mask)
    patch_dim = 3 * vision.temporal_patch_size * vision.patch_size**2
    data = {
        'pixel_values': torch.randn(batch_size * gh * gw, patch_dim, generator=gen).to(device),
        'image_grid_thw': grid.to(device),
        'g_pixel_values': torch.randn(batch_size, 3, 1024, 1024, generator=gen).to(device),
        'input_ids': input_ids.to(device),
        'labels': labels.to(device),
        'attention_mask': attention_mask.to(device),
        'position_ids': position_ids.to(device),
        'masks': [thin_lines(h, w, gen)[None].to(device) for _ in range(batch_size)],
        # found on the host, as vessel_collate does for the real loader
        'layout': batch_layout(input_ids, labels, model.seg_token_id, model.img_context_id, attention_mask).to(device),
    }
    samples = [
        {'img_path': f'{key_prefix}_{i}', 'ori_size': (h, w), 'frozen_feature_key': f'{key_prefix}_{i}'}
        for i in range(batch_size)
    ]
    real_tokens = int(attention_mask.sum())
    meta = {
        'n_tiles': 1,
        'image_tokens': n_tokens,
        'grid_thw': [1, gh, gw],
        'seq_len': length,
        'real_tokens': real_tokens,
        'padding_fraction': 1 - real_tokens / (batch_size * length),
        'answer_tokens': int((labels[:, 1:] != -100).sum()),
    }
    return {'data': data, 'data_samples': samples, 'meta': meta}

"""Synthetic training batches at a chosen image size, in the batch format of docs/ARCHITECTURE.md.

Token sequences are real conversations (the checkpoint's template, random questions and answers,
``256 * n_tiles`` ``<IMG_CONTEXT>`` tokens) encoded with the project's tiny tokenizer; its added
tokens sit at the end of the vocabulary in the real order, so its ids map onto the real layout by
a constant offset (``models/presets.preset_token_id``). Pixels are random normal, masks random
thin lines, so nothing is zeros.
"""

from __future__ import annotations

import functools
import random
import tempfile
from pathlib import Path

import torch

from ..datasets.batch_layout import batch_layout
from ..datasets.conversation import SEG_ANSWERS, VESSEL_QUESTIONS, encode_turn, make_question
from ..datasets.image_processing import TILE_SIZE, find_closest_aspect_ratio, target_ratios


def n_tiles_for(width: int, height: int, min_num: int = 1, max_num: int = 12, use_thumbnail: bool = True) -> int:
    """InternVL's dynamic tiling count for an image (grid tiles + thumbnail when more than one)."""
    cols, rows = find_closest_aspect_ratio(width, height, target_ratios(min_num, max_num), TILE_SIZE)
    n = cols * rows
    return n + 1 if use_thumbnail and n != 1 else n


@functools.lru_cache(maxsize=3)
def tiny_tokenizer(family: str = 'internvl'):
    """The project's tiny tokenizer for ``family`` (built once per process)."""
    from transformers import AutoTokenizer

    from ..datasets.tiny_tokenizer import build_tiny_tokenizer

    out = Path(tempfile.mkdtemp(prefix=f'sa2va_bench_tok_{family}_'))
    build_tiny_tokenizer(out, family=family)
    return AutoTokenizer.from_pretrained(out)


def thin_lines(h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """A bool (h, w) mask of a few random 2-px lines (vessel-like foreground, ~2-5%)."""
    mask = torch.zeros(h, w, dtype=torch.bool)
    for _ in range(8):
        if torch.rand((), generator=gen) < 0.5:
            r = int(torch.randint(0, h - 2, (), generator=gen))
            mask[r : r + 2] = True
        else:
            c = int(torch.randint(0, w - 2, (), generator=gen))
            mask[:, c : c + 2] = True
    return mask


def make_batch(
    model, batch_size: int, image_hw: tuple[int, int], device: torch.device | str, seed: int = 0, key_prefix: str = 'b0'
) -> dict:
    """One collated batch ``{'data': ..., 'data_samples': ...}`` for ``model`` (a Sa2VAVesselModel), on ``device``."""
    arch = model.sa2va.arch
    if arch.is_qwen:  # Qwen-VL families: patches + image_grid_thw + M-RoPE ids
        from .synthetic_qwen import make_qwen_batch

        return make_qwen_batch(model, batch_size, image_hw, device, seed=seed, key_prefix=key_prefix)
    h, w = image_hw
    tiles = n_tiles_for(w, h, arch.min_dynamic_patch, arch.max_dynamic_patch, arch.use_thumbnail)
    tok = tiny_tokenizer()
    offset = arch.llm.vocab_size - len(tok)
    if offset < 0:
        raise ValueError(f'vocabulary {arch.llm.vocab_size} smaller than the tiny tokenizer ({len(tok)})')
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(batch_size):
        turn = encode_turn(
            tok,
            make_question(rng.choice(VESSEL_QUESTIONS)),
            rng.choice(SEG_ANSWERS),
            n_tiles=tiles,
            template=arch.template,
            tokens_per_tile=arch.num_image_tokens,
        )
        # the tiny tokenizer's added tokens are its last ids; shift them to the real layout
        ids = [i + offset if i >= len(tok) - 36 else i for i in turn.input_ids]
        labels = [i + offset if i >= len(tok) - 36 else i for i in turn.labels]
        seqs.append((ids, labels))
    length = max(len(s[0]) for s in seqs)
    pad = len(tok) - 36 + offset  # <|endoftext|>
    input_ids = torch.full((batch_size, length), pad, dtype=torch.long)
    labels = torch.full((batch_size, length), -100, dtype=torch.long)
    attention_mask = torch.zeros((batch_size, length), dtype=torch.bool)
    position_ids = torch.zeros((batch_size, length), dtype=torch.long)
    for i, (ids, lab) in enumerate(seqs):
        n = len(ids)
        input_ids[i, :n], labels[i, :n] = torch.tensor(ids), torch.tensor(lab)
        attention_mask[i, :n] = True
        position_ids[i, :n] = torch.arange(n)
    size = arch.force_image_size
    data = {
        'pixel_values': torch.randn(batch_size * tiles, 3, size, size, generator=gen).to(device),
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
        'n_tiles': tiles,
        'seq_len': length,
        'real_tokens': real_tokens,
        'padding_fraction': 1 - real_tokens / (batch_size * length),
        'answer_tokens': int((labels[:, 1:] != -100).sum()),
    }
    return {'data': data, 'data_samples': samples, 'meta': meta}

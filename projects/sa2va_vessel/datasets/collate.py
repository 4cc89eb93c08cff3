"""`vessel_collate`: dataset items -> the batch of docs/ARCHITECTURE.md.

`{'data': {pixel_values, g_pixel_values, input_ids, labels, attention_mask, position_ids,
masks}, 'data_samples': [{img_path, ori_size, mask, fov}, ...]}`; sequences right-padded
with the tokenizer's pad id (labels with -100).

Qwen-VL family items (they carry `image_grid_thw`) give `pixel_values` as every image's patches
concatenated (N, 3*T*p*p), `image_grid_thw` (B, 3) and `position_ids` as the items' M-RoPE ids
(3, B, L), padding positions 1 (what `get_rope_index` writes where the attention mask is 0).
InternVL items give (T, 3, 448, 448) tiles and (B, L) positions.

Items that carry their tokenizer's ``seg_token_id`` and ``image_token_id`` (every
``SampleBuilder`` item) also give ``data['layout']``, a ``BatchLayout`` found here on the CPU, so
that the model's forward never reads a count back from the GPU (``datasets/batch_layout.py``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import torch

from ..registry import FUNCTIONS
from .batch_layout import BatchLayout, batch_layout
from .conversation import IGNORE_INDEX

_REQUIRED = ('pixel_values', 'g_pixel_values', 'input_ids', 'labels', 'masks', 'img_path', 'ori_size')


@FUNCTIONS.register_module()
def vessel_collate(
    samples: Sequence[Dict[str, Any]], pad_token_id: Optional[int] = None, pad_to_multiple_of: Optional[int] = None
) -> Dict[str, Any]:
    """Collate VesselSegDataset items (see module docstring).

    `pad_token_id` defaults to the items' own 'pad_token_id' (the dataset's tokenizer's).
    `pad_to_multiple_of` rounds the padded length up (e.g. 64): compiled layers then see a few
    sequence-length buckets instead of one new shape, and one recompile, per distinct length.
    """
    if len(samples) == 0:
        raise ValueError('vessel_collate: empty batch')
    for i, s in enumerate(samples):
        missing = [k for k in _REQUIRED if k not in s]
        if missing:
            raise KeyError(f'vessel_collate: sample {i} ({s.get("img_path", "?")}) lacks {missing}')
    if pad_token_id is None:
        ids = {s.get('pad_token_id') for s in samples}
        if None in ids or len(ids) != 1:
            raise ValueError(f'vessel_collate: need one pad_token_id (argument or per item), items have {ids}')
        pad_token_id = ids.pop()

    lengths = [int(s['input_ids'].numel()) for s in samples]
    batch, max_len = len(samples), max(lengths)
    if pad_to_multiple_of:
        max_len = -(-max_len // int(pad_to_multiple_of)) * int(pad_to_multiple_of)
    input_ids = torch.full((batch, max_len), int(pad_token_id), dtype=torch.long)
    labels = torch.full((batch, max_len), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((batch, max_len), dtype=torch.bool)
    position_ids = torch.zeros((batch, max_len), dtype=torch.long)
    for i, (s, n) in enumerate(zip(samples, lengths)):
        if s['labels'].numel() != n:
            raise ValueError(f'vessel_collate: {s["img_path"]}: input_ids and labels lengths differ')
        input_ids[i, :n] = s['input_ids']
        labels[i, :n] = s['labels']
        attention_mask[i, :n] = True
        position_ids[i, :n] = torch.arange(n)

    qwen = ['image_grid_thw' in s for s in samples]
    if any(qwen) and not all(qwen):
        raise ValueError('vessel_collate: a batch mixes Qwen-VL items (with image_grid_thw) and InternVL items')
    extra: Dict[str, Any] = {}
    if all(qwen):
        position_ids = torch.ones((3, batch, max_len), dtype=torch.long)
        for i, (s, n) in enumerate(zip(samples, lengths)):
            if tuple(s['position_ids'].shape) != (3, n):
                raise ValueError(
                    f'vessel_collate: {s["img_path"]}: position_ids {tuple(s["position_ids"].shape)}, '
                    f'expected (3, {n}) M-RoPE ids'
                )
            position_ids[:, i, :n] = s['position_ids']
        extra['image_grid_thw'] = torch.cat([s['image_grid_thw'] for s in samples], dim=0)  # (B, 3)

    data = {
        'pixel_values': torch.cat([s['pixel_values'] for s in samples], dim=0),  # (T, 3, 448, 448) or (N, D)
        'g_pixel_values': torch.stack([s['g_pixel_values'] for s in samples]),  # (B, 3, 1024, 1024)
        'input_ids': input_ids,
        'labels': labels,
        'attention_mask': attention_mask,
        'position_ids': position_ids,
        'masks': [s['masks'].to(torch.bool) for s in samples],  # B x (S, H, W)
        **extra,
    }
    layout = _layout(samples, input_ids, labels, attention_mask)
    if layout is not None:
        data['layout'] = layout
    data_samples: List[Dict[str, Any]] = [
        {
            'img_path': s['img_path'],
            'ori_size': tuple(s['ori_size']),
            'mask': s['masks'].to(torch.bool).numpy(),
            'fov': s.get('fov'),
            'frozen_feature_key': s.get('frozen_feature_key'),
        }
        for s in samples
    ]
    return {'data': data, 'data_samples': data_samples}


def _layout(
    samples: Sequence[Dict[str, Any]], input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor
) -> Optional[BatchLayout]:
    """The batch's layout, when every item names its [SEG] and image token ids (and they agree)."""
    ids = {(s.get('seg_token_id'), s.get('image_token_id')) for s in samples}
    if len(ids) != 1:
        raise ValueError(
            f'vessel_collate: the items name different [SEG]/image token ids {sorted(ids, key=str)}: '
            'they come from different tokenizers'
        )
    seg, image = ids.pop()
    if seg is None or image is None:
        return None
    return batch_layout(input_ids, labels, int(seg), int(image), attention_mask)

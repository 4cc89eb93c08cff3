"""`BatchLayout`: where a batch's [SEG] tokens, answer labels and image slots are, known on the host.

The teacher-forced forward checks that the image slots match the image embeddings, and gathers
the LLM's hidden state at every [SEG] token and at every position whose next token is a label.
Found on the device (``int(is_image.sum())``, ``hidden[is_seg]``), each of these reads a count
back from the GPU: the host waits for the queued work, and the GPU idles while the
host queues the next part. ``vessel_collate`` computes the layout from the CPU token ids instead
(in the loader workers; the loader pins it with the batch), so the forward gathers with index
tensors of known length and checks with host integers: no synchronisation.

``batch_layout`` is the one computation; the model falls back to it on the device for batches
that carry no layout (generation, callers that build batches themselves), which then synchronises
as before.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .conversation import IGNORE_INDEX


class BatchLayout(NamedTuple):
    """A (B, L) batch's token layout. Tensors move to the device with the batch; ints stay."""

    seg_index: torch.Tensor  # (N_seg,) int64: flat index b * L + t of each [SEG], row-major order
    seg_counts: torch.Tensor  # (B,) int64: [SEG] tokens per sample
    label_index: torch.Tensor  # (N_lab,) int64: flat index b * L + t of each position whose next token is a label
    # (N_lab is label_index.numel(): a tensor's shape is known on the host)
    label_target: torch.Tensor  # (N_lab,) int64: that next token
    seg_per_sample: tuple[int, ...]  # seg_counts on the host
    n_image_slots: int  # image placeholder tokens in the batch
    # every row's real tokens come first and its padding only after them (what vessel_collate
    # writes): under causal attention no real token sees a pad, so the padding mask changes nothing
    # at a real position (False where the attention mask was not given)
    right_padded: bool = False
    # (N_img,) int64: flat index b * L + t of each image slot, row-major order (None: not found)
    image_index: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> 'BatchLayout':
        """This layout with its tensors on ``device``."""
        return BatchLayout(
            *(x.to(device, non_blocking=non_blocking) if isinstance(x, torch.Tensor) else x for x in self)
        )


def batch_layout(
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    seg_token_id: int,
    image_token_id: int,
    attention_mask: torch.Tensor | None = None,
) -> BatchLayout:
    """The layout of ``input_ids``/``labels`` (B, L) on their device (on a GPU: a few synchronisations)."""
    if input_ids.shape != labels.shape or input_ids.dim() != 2:
        raise ValueError(
            f'batch_layout needs (B, L) input_ids and labels of one shape; got {tuple(input_ids.shape)} '
            f'and {tuple(labels.shape)}'
        )
    if attention_mask is not None and attention_mask.shape != input_ids.shape:
        raise ValueError(
            f'batch_layout: attention_mask {tuple(attention_mask.shape)} is not the shape of input_ids '
            f'{tuple(input_ids.shape)}'
        )
    is_seg = input_ids == seg_token_id
    image_index = (input_ids == image_token_id).reshape(-1).nonzero().squeeze(1)
    seg_counts = is_seg.sum(dim=1)
    label_index, label_target = label_rows(labels)
    return BatchLayout(
        seg_index=is_seg.reshape(-1).nonzero().squeeze(1),
        seg_counts=seg_counts,
        label_index=label_index,
        label_target=label_target,
        seg_per_sample=tuple(int(n) for n in seg_counts.tolist()),
        n_image_slots=int(image_index.numel()),
        right_padded=attention_mask is not None and is_right_padded(attention_mask),
        image_index=image_index,
    )


def is_right_padded(attention_mask: torch.Tensor) -> bool:
    """Whether every row of the (B, L) ``attention_mask`` is ones, then zeros (padding at the end only)."""
    mask = attention_mask.to(torch.bool)
    lengths = mask.sum(dim=1, keepdim=True)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    return bool(torch.equal(mask, positions < lengths))


def label_rows(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat index b * L + t, next token) of every position of ``labels`` (B, L) whose next token is a
    label, in row-major order: the rows the next-token loss reads."""
    target = labels[:, 1:]
    rows = (target != IGNORE_INDEX).nonzero()  # (N_lab, 2): sample, position
    return rows[:, 0] * labels.shape[1] + rows[:, 1], target[rows[:, 0], rows[:, 1]]


def layouts_equal(a: BatchLayout, b: BatchLayout) -> bool:
    """Whether two layouts of one batch agree (tensors compared on ``a``'s device)."""
    for x, y in zip(a, b):
        if isinstance(x, torch.Tensor):
            if not isinstance(y, torch.Tensor) or x.shape != y.shape or not torch.equal(x, y.to(x.device)):
                return False
        elif x != y:
            return False
    return True

"""A small stand-in for the Sa2VA model, with the same contract (docs/ARCHITECTURE.md).

It lets the runner be developed and tested on CPU in seconds. It copies the parts of the real
model that matter to the runner: a frozen tower run under ``no_grad``, a LoRA pair whose ``B``
starts at zero (so ``A`` gets a zero gradient on the first step, exactly like PEFT's LoRA), a
text-to-prompt projection and a mask decoder, three named loss parts, and the
``trainable_groups()`` / ``parameter_table()`` methods the hooks read.

Two switches reproduce the bugs the gradient guard must catch:

* ``forward_under_no_grad=True``: the whole forward runs in ``torch.no_grad()`` and the loss is
  made differentiable with ``.detach().requires_grad_(True)`` (the seed code's hack): backward
  runs, nothing learns.
* ``cut_group='<name>'``: the output of that group is detached, so it alone gets no gradient.
* ``zero_group='<name>'``: the output of that group is multiplied by 0: still connected to the
  loss, but its gradient is exactly zero.
* ``nan_grad_from_iter=N``: from the N-th training forward on (1-based), the gradient flowing
  back into the LoRA output turns NaN (the loss stays finite).
* ``zero_grad_from_iter=N``: the same, but the gradient becomes exactly zero.
* ``skip_step_after=N``: ``train_step`` stops calling ``optim_wrapper.step()`` after N steps.

``base_dtype='bfloat16'`` keeps the frozen parts in bf16 and the trainables fp32, as the real
model is built for the plain runner in bf16; it runs only once the trainables are bf16 too
(``MasterWeightOptimWrapper`` or DeepSpeed), since the toy has no autocast.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, FUNCTIONS, MODELS
from torch import nn
from torch.utils.data import Dataset

TOY_GROUPS = ('lora', 'text_hidden_fcs', 'mask_decoder')


@MODELS.register_module()
class ToySegModel(BaseModel):
    """Tiny segmentation model with the runner-facing contract of ``Sa2VAVesselModel``."""

    def __init__(
        self,
        hidden: int = 8,
        vocab: int = 16,
        lora_rank: int = 2,
        forward_under_no_grad: bool = False,
        cut_group: Optional[str] = None,
        zero_group: Optional[str] = None,
        nan_grad_from_iter: Optional[int] = None,
        zero_grad_from_iter: Optional[int] = None,
        skip_step_after: Optional[int] = None,
        base_dtype: Optional[str] = None,
        data_preprocessor: Optional[dict] = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        for arg, value in (('cut_group', cut_group), ('zero_group', zero_group)):
            if value is not None and value not in TOY_GROUPS:
                raise ValueError(f'{arg} must be one of {TOY_GROUPS}, got {value!r}')
        self.forward_under_no_grad = forward_under_no_grad
        self.cut_group = cut_group
        self.zero_group = zero_group
        self.nan_grad_from_iter = nan_grad_from_iter
        self.zero_grad_from_iter = zero_grad_from_iter
        self.skip_step_after = skip_step_after
        self._train_forwards = 0
        self._train_steps = 0
        # Frozen parts (stand-ins for the vision tower, the LLM body and the SAM2 encoder).
        self.vision_tower = nn.Conv2d(3, hidden, 3, padding=1)
        self.embed_tokens = nn.Embedding(vocab, hidden)
        self.lm_head = nn.Linear(hidden, vocab, bias=False)
        # Trainable parts.
        self.lora_A = nn.Linear(hidden, lora_rank, bias=False)
        self.lora_B = nn.Linear(lora_rank, hidden, bias=False)
        nn.init.zeros_(self.lora_B.weight)  # as PEFT does: the adapter starts as a no-op
        self.text_hidden_fcs = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.mask_decoder = nn.Conv2d(hidden, 1, 1)
        for module in (self.vision_tower, self.embed_tokens, self.lm_head):
            module.requires_grad_(False)
            if base_dtype is not None:
                module.to(getattr(torch, base_dtype))

    # -- contract -----------------------------------------------------------------------------
    def trainable_groups(self) -> dict[str, list[tuple[str, nn.Parameter]]]:
        """Named groups of trainable parameters (the guard and TensorBoard hooks read these)."""
        prefixes = {
            'lora': ('lora_A.', 'lora_B.'),
            'text_hidden_fcs': ('text_hidden_fcs.',),
            'mask_decoder': ('mask_decoder.',),
        }
        groups: dict[str, list[tuple[str, nn.Parameter]]] = {}
        for group, starts in prefixes.items():
            params = [(n, p) for n, p in self.named_parameters() if n.startswith(starts) and p.requires_grad]
            groups[group] = params  # every group is switched on, empty when frozen
        return groups

    def parameter_table(self) -> str:
        """One line per top-level module: trainable or frozen, parameter count."""
        rows = ['module            state      params']
        for name, module in self.named_children():
            if name == 'data_preprocessor':
                continue
            params = list(module.parameters())
            count = sum(p.numel() for p in params)
            state = 'trainable' if any(p.requires_grad for p in params) else 'frozen'
            rows.append(f'{name:<17} {state:<10} {count}')
        return '\n'.join(rows)

    def train_step(self, data: Any, optim_wrapper: Any) -> dict[str, torch.Tensor]:
        self._train_steps += 1
        if self.skip_step_after is None or self._train_steps <= self.skip_step_after:
            return super().train_step(data, optim_wrapper)
        # The planted bug: backward runs, the optimizer step is skipped.
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode='loss')
        parsed, log_vars = self.parse_losses(losses)
        optim_wrapper.backward(parsed)
        optim_wrapper.zero_grad()
        return log_vars

    # -- forward ------------------------------------------------------------------------------
    def forward(self, data: dict[str, Any], data_samples: Optional[list[dict]] = None, mode: str = 'loss') -> Any:
        if mode == 'loss':
            ctx = torch.no_grad() if self.forward_under_no_grad else contextlib.nullcontext()
            with ctx:
                losses = self._loss(data)
            if self.forward_under_no_grad:
                # The seed's hack: makes backward() run without error, yet nothing learns.
                losses = {k: v.detach().requires_grad_(True) for k, v in losses.items()}
            return losses
        if mode == 'predict':
            with torch.no_grad():
                logits = self._mask_logits(data)[0]
            return [{'prob': logits[i].sigmoid().float()} for i in range(logits.shape[0])]
        raise ValueError(f'unsupported mode {mode!r}')

    def _cut(self, group: str, x: torch.Tensor) -> torch.Tensor:
        if self.zero_group == group:
            return x * 0.0
        return x.detach() if self.cut_group == group else x

    def _mask_logits(self, data: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # The batch stays fp32; under DeepSpeed bf16 the weights are bf16 (contract: the model
        # casts its float inputs to its own dtype).
        pixel_values = data['pixel_values'].to(self.vision_tower.weight.dtype)
        with torch.no_grad():  # frozen tower, as in the real model
            image_feats = self.vision_tower(pixel_values)  # (B, C, H, W)
            token_embeds = self.embed_tokens(data['input_ids'])  # (B, L, C)
        lora_delta = self._cut('lora', self.lora_B(self.lora_A(token_embeds)))
        planted = self.nan_grad_from_iter or self.zero_grad_from_iter
        if lora_delta.requires_grad and planted is not None:
            self._train_forwards += 1
            if self._train_forwards >= planted:
                value = float('nan') if self.nan_grad_from_iter is not None else 0.0
                lora_delta.register_hook(lambda g: torch.full_like(g, value))
        hidden = token_embeds + lora_delta
        seg_hidden = hidden[:, -1]  # (B, C) at "[SEG]"
        prompt = self._cut('text_hidden_fcs', self.text_hidden_fcs(seg_hidden))
        mask_logits = self.mask_decoder(image_feats * prompt[:, :, None, None])  # (B, 1, H, W)
        return self._cut('mask_decoder', mask_logits), hidden

    def _loss(self, data: dict[str, Any]) -> dict[str, torch.Tensor]:
        mask_logits, hidden = self._mask_logits(data)
        mask_logits = mask_logits.float()  # losses in fp32 whatever the weights' dtype
        token_logits = self.lm_head(hidden).float()
        loss_llm = F.cross_entropy(token_logits.flatten(0, 1), data['labels'].flatten(), ignore_index=-100)
        target = torch.stack([m[:1].float() for m in data['masks']])  # (B, 1, H, W)
        loss_mask = F.binary_cross_entropy_with_logits(mask_logits, target)
        prob = mask_logits.sigmoid().flatten(1)
        tgt = target.flatten(1)
        loss_dice = (1 - (2 * (prob * tgt).sum(1) + 1) / (prob.sum(1) + tgt.sum(1) + 1)).mean()
        return {'loss_llm': loss_llm, 'loss_mask': loss_mask, 'loss_dice': loss_dice}


@DATASETS.register_module()
class ToyVesselDataset(Dataset):
    """Deterministic random images with a thin "vessel" line; sample ``i`` is always the same."""

    def __init__(self, num_samples: int = 16, size: int = 16, seq_len: int = 6, vocab: int = 16) -> None:
        self.num_samples = num_samples
        self.size = size
        self.seq_len = seq_len
        self.vocab = vocab
        self.metainfo = dict(classes=('vessel',))

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Any]:
        gen = torch.Generator().manual_seed(index)
        image = torch.rand(3, self.size, self.size, generator=gen)
        mask = torch.zeros(1, self.size, self.size, dtype=torch.bool)
        row = int(torch.randint(0, self.size, (1,), generator=gen))
        mask[0, row, :] = True
        image[:, row, :] += 1.0
        input_ids = torch.randint(0, self.vocab, (self.seq_len,), generator=gen)
        labels = input_ids.clone()
        labels[: self.seq_len // 2] = -100
        return dict(index=index, pixel_values=image, input_ids=input_ids, labels=labels, mask=mask)


@FUNCTIONS.register_module()
def toy_collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch toy samples into the ``{'data', 'data_samples'}`` layout of the contract."""
    data = dict(
        pixel_values=torch.stack([s['pixel_values'] for s in samples]),
        input_ids=torch.stack([s['input_ids'] for s in samples]),
        labels=torch.stack([s['labels'] for s in samples]),
        masks=[s['mask'] for s in samples],
    )
    data_samples = [
        dict(
            index=s['index'],
            img_path=f'toy/{s["index"]}.png',
            ori_size=tuple(s['mask'].shape[-2:]),
            mask=s['mask'].numpy(),
            fov=np.ones(tuple(s['mask'].shape[-2:]), dtype=bool),
        )
        for s in samples
    ]
    return {'data': data, 'data_samples': data_samples}

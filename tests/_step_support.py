"""Shared test helper: one teacher-forced training step's losses and gradients."""

from __future__ import annotations

import torch


def loss_and_grads(model: torch.nn.Module, data: dict) -> tuple[dict, list[torch.Tensor]]:
    """Forward (``mode='loss'``) and backward from zeroed gradients: the detached losses and a copy of
    every trainable gradient. Seeded, so repeated calls draw the same LoRA dropout masks."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    losses = model(data, None, mode='loss')
    sum(losses.values()).backward()
    grads = [p.grad.clone() for p in model.parameters() if p.requires_grad and p.grad is not None]
    return {k: v.detach() for k, v in losses.items()}, grads

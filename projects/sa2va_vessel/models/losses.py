"""Mask losses at a resolution where 1-2 px vessels survive.

SAM2's decoder predicts at 256x256 (stride 4 of its 1024 input). A vessel 1-2 px wide in a 565 px
fundus image is gone at 256x256, so the logits are upsampled (bilinear) to ``resolution``
(default 1024) and compared with the ground truth resized nearest to the same size; never silently
256.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def resize_masks_nearest(masks: list[torch.Tensor], size: int) -> torch.Tensor:
    """Ground-truth masks (each (S_i, H_i, W_i), bool) -> (sum S_i, size, size) float, nearest."""
    resized = [F.interpolate(m.unsqueeze(1).float(), size=(size, size), mode='nearest')[:, 0] for m in masks]
    return torch.cat(resized, dim=0)


def upsample_logits(mask_logits: torch.Tensor, size: int) -> torch.Tensor:
    """(N, h, w) decoder logits -> (N, size, size) float32, bilinear."""
    if mask_logits.shape[-1] == size and mask_logits.shape[-2] == size:
        return mask_logits.float()
    return F.interpolate(mask_logits.unsqueeze(1).float(), size=(size, size), mode='bilinear',
                         align_corners=False)[:, 0]


def sigmoid_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel BCE of each mask, averaged over masks."""
    return F.binary_cross_entropy_with_logits(logits, target, reduction='none').flatten(1).mean(1).mean()


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of each mask (sigmoid probabilities), averaged over masks."""
    prob = logits.sigmoid().flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    dice = (2 * inter + eps) / (prob.sum(1) + target.sum(1) + eps)
    return (1 - dice).mean()


def mask_losses(mask_logits: torch.Tensor, gt_masks: list[torch.Tensor], resolution: int,
                bce_weight: float, dice_weight: float) -> dict[str, torch.Tensor]:
    """BCE and Dice between decoder logits and ground truth at ``resolution`` x ``resolution``."""
    target = resize_masks_nearest(gt_masks, resolution).to(mask_logits.device)
    if target.shape[0] != mask_logits.shape[0]:
        raise ValueError(f'{mask_logits.shape[0]} predicted masks ([SEG] tokens) but {target.shape[0]} '
                         'ground-truth masks in the batch')
    logits = upsample_logits(mask_logits, resolution)
    return {'loss_mask': bce_weight * sigmoid_bce(logits, target),
            'loss_dice': dice_weight * dice_loss(logits, target)}


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` (N, h, w) at ``coords`` (N, P, 2) in [0, 1] (x, y) -> (N, P)."""
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (N, P, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(maps.unsqueeze(1).float(), grid, align_corners=False)[:, 0, :, 0]


def uncertain_point_coords(mask_logits: torch.Tensor, num_points: int, oversample_ratio: float,
                           importance_sample_ratio: float) -> torch.Tensor:
    """PointRend's training points: of ``oversample_ratio * num_points`` uniform candidates keep
    the ``importance_sample_ratio`` share with the least certain logit (smallest |logit|), and fill
    the rest with fresh uniform points. (N, num_points, 2) in [0, 1]."""
    n, device = mask_logits.shape[0], mask_logits.device
    candidates = torch.rand(n, int(num_points * oversample_ratio), 2, device=device)
    uncertainty = -point_sample(mask_logits.detach(), candidates).abs()
    n_uncertain = int(importance_sample_ratio * num_points)
    top = uncertainty.topk(n_uncertain, dim=1).indices
    chosen = candidates.gather(1, top.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - n_uncertain, 2, device=device)
    return torch.cat([chosen, uniform], dim=1)


def point_sampled_mask_losses(mask_logits: torch.Tensor, gt_masks: list[torch.Tensor], bce_weight: float,
                              dice_weight: float, num_points: int = 112 * 112, oversample_ratio: float = 3.0,
                              importance_sample_ratio: float = 0.75) -> dict[str, torch.Tensor]:
    """The official Sa2VA recipe's mask loss: BCE + Dice at ``num_points`` importance-sampled
    points of the 256x256 logits, the ground truth resized nearest to the logits' size first."""
    size = mask_logits.shape[-1]
    target = resize_masks_nearest(gt_masks, size).to(mask_logits.device)
    if target.shape[0] != mask_logits.shape[0]:
        raise ValueError(f'{mask_logits.shape[0]} predicted masks ([SEG] tokens) but {target.shape[0]} '
                         'ground-truth masks in the batch')
    with torch.no_grad():
        coords = uncertain_point_coords(mask_logits.float(), num_points, oversample_ratio, importance_sample_ratio)
        labels = point_sample(target, coords)
    logits = point_sample(mask_logits, coords)
    return {'loss_mask': bce_weight * sigmoid_bce(logits, labels), 'loss_dice': dice_weight * dice_loss(logits, labels)}

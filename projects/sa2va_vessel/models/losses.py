"""Mask losses at a resolution where 1-2 px vessels survive.

SAM2's decoder predicts at 256x256 (stride 4 of its 1024 input). A vessel 1-2 px wide in a 565 px
fundus image is gone at 256x256, so the logits are upsampled (bilinear) to ``resolution``
(default 1024) and compared with the ground truth resized nearest to the same size; never silently
256.

``point_sampled_mask_losses`` is the official fine-tune's loss instead (12,544 importance-sampled
points at the decoder's 256x256), kept as the comparison arm of docs/RECIPE.md.
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
    return F.interpolate(mask_logits.unsqueeze(1).float(), size=(size, size), mode='bilinear', align_corners=False)[
        :, 0
    ]


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


def mask_losses(
    mask_logits: torch.Tensor, gt_masks: list[torch.Tensor], resolution: int, bce_weight: float, dice_weight: float
) -> dict[str, torch.Tensor]:
    """BCE and Dice between decoder logits and ground truth at ``resolution`` x ``resolution``."""
    target = resize_masks_nearest(gt_masks, resolution).to(mask_logits.device)
    if target.shape[0] != mask_logits.shape[0]:
        raise ValueError(
            f'{mask_logits.shape[0]} predicted masks ([SEG] tokens) but {target.shape[0]} '
            'ground-truth masks in the batch'
        )
    logits = upsample_logits(mask_logits, resolution)
    return {'loss_mask': bce_weight * sigmoid_bce(logits, target), 'loss_dice': dice_weight * dice_loss(logits, target)}


# ---- the official recipe's point-sampled loss (comparison arm; docs/RECIPE.md) ---------------
def sample_points(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` (N, H, W) at ``coords`` (N, P, 2), (x, y) in [0, 1] -> (N, P).

    ``grid_sample`` with ``align_corners=False``: (0, 0) is the top-left corner of the top-left
    pixel, the convention of detectron2 / Mask2Former ``point_sample``.
    """
    grid = coords.to(maps.dtype) * 2.0 - 1.0
    return F.grid_sample(maps.unsqueeze(1), grid.unsqueeze(2), mode='bilinear', align_corners=False)[:, 0, :, 0]


def uncertain_point_coords(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Point coordinates (N, num_points, 2) in [0, 1]: ``importance_sample_ratio`` of them the
    most uncertain (largest ``-|logit|``) of ``oversample_ratio * num_points`` uniform candidates,
    the rest uniform (PointRend's training-time sampling as Mask2Former uses it)."""
    if oversample_ratio < 1:
        raise ValueError(f'oversample_ratio must be >= 1, got {oversample_ratio}')
    if not 0.0 <= importance_sample_ratio <= 1.0:
        raise ValueError(f'importance_sample_ratio must be in [0, 1], got {importance_sample_ratio}')
    n, device = mask_logits.shape[0], mask_logits.device
    n_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(n, n_candidates, 2, device=device, generator=generator)
    uncertainty = -sample_points(mask_logits.float(), candidates).abs()
    n_important = int(importance_sample_ratio * num_points)
    top = uncertainty.topk(n_important, dim=1).indices
    important = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    uniform = torch.rand(n, num_points - n_important, 2, device=device, generator=generator)
    return torch.cat([important, uniform], dim=1)


def point_sampled_mask_losses(
    mask_logits: torch.Tensor,
    gt_masks: list[torch.Tensor],
    bce_weight: float = 2.0,
    dice_weight: float = 0.5,
    num_points: int = 12544,
    oversample_ratio: float = 3.0,
    importance_sample_ratio: float = 0.75,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """BCE and Dice on ``num_points`` importance-sampled points per mask, at the decoder's size.

    The official Sa2VA fine-tune's mask loss: the ground truth is resized (nearest) to the
    decoder's logit size (256x256 for a 1024 SAM2 input); points are chosen without gradient
    from the logits' uncertainty; logits and ground truth are both read bilinearly at those
    points; BCE is the mean over all points of all masks and Dice (eps 1) the mean over masks.
    """
    size = mask_logits.shape[-2:]
    if size[0] != size[1]:
        raise ValueError(f'mask logits must be square, got {tuple(size)}')
    target = resize_masks_nearest(gt_masks, int(size[0])).to(mask_logits.device)
    if target.shape[0] != mask_logits.shape[0]:
        raise ValueError(
            f'{mask_logits.shape[0]} predicted masks ([SEG] tokens) but {target.shape[0]} '
            'ground-truth masks in the batch'
        )
    logits = mask_logits.float()
    with torch.no_grad():  # the choice of points is not differentiated (as in PointRend)
        coords = uncertain_point_coords(
            logits.detach(), num_points, oversample_ratio, importance_sample_ratio, generator
        )
        point_target = sample_points(target, coords)
    point_logits = sample_points(logits, coords)
    return {
        'loss_mask': bce_weight * sigmoid_bce(point_logits, point_target),
        'loss_dice': dice_weight * dice_loss(point_logits, point_target),
    }

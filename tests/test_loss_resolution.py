"""The README's promise: the mask loss is computed at 1024x1024, never silently at SAM2's 256."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.config import Config

from tests.conftest import REPO_ROOT


def _reference(logits: torch.Tensor, masks: list[torch.Tensor], size: int) -> tuple[float, float]:
    """BCE and soft Dice (eps 1) written out here, independently of models/losses.py."""
    up = F.interpolate(logits[:, None].float(), size=(size, size), mode='bilinear', align_corners=False)[:, 0]
    gt = torch.cat([F.interpolate(m[:, None].float(), size=(size, size), mode='nearest')[:, 0] for m in masks])
    bce = F.binary_cross_entropy_with_logits(up, gt)
    prob = up.sigmoid().flatten(1)
    gt = gt.flatten(1)
    dice = 1 - (2 * (prob * gt).sum(1) + 1) / (prob.sum(1) + gt.sum(1) + 1)
    return float(bce), float(dice.mean())


def test_configs_ask_for_1024():
    for name in ('vessel_lora.py', 'vessel_lora_tiny.py'):
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / name))
        assert cfg.model.loss_resolution == 1024, name


def test_training_loss_is_computed_at_1024(tiny_checkpoint, synthetic_vessels):
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    torch.manual_seed(0)
    model = Sa2VAVesselModel(
        str(tiny_checkpoint), dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False
    )  # the default loss_resolution
    assert model.loss_resolution == 1024
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    batch = vessel_collate([dataset[0], dataset[1]])
    data = batch['data']
    captured = {}
    decode = model.sa2va.decode_masks

    def spy(*args, **kwargs):
        out = dict(decode(*args, **kwargs))
        # random weights give near-zero logits; sharpen them so resolution shows in the loss
        out['mask_logits'] = out['mask_logits'] * 50
        captured['logits'] = out['mask_logits'].detach()
        return out

    model.sa2va.decode_masks = spy
    losses = model.loss(data, batch['data_samples'])
    logits = captured['logits']
    assert logits.shape[-1] == 256, 'SAM2 decodes at 256: the loss must upsample'
    bce_1024, dice_1024 = _reference(logits, data['masks'], 1024)
    bce_256, dice_256 = _reference(logits, data['masks'], 256)
    # Thin synthetic vessels: the two resolutions give clearly different losses.
    assert abs(bce_1024 - bce_256) > 1e-3 and abs(dice_1024 - dice_256) > 1e-3
    assert abs(float(losses['loss_mask']) - model.mask_loss_weight * bce_1024) < 1e-5
    assert abs(float(losses['loss_dice']) - model.dice_loss_weight * dice_1024) < 1e-5

"""The official recipe's point-sampled mask loss and the full embed_tokens/lm_head switch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.models.losses import (mask_losses, point_sampled_mask_losses, sample_points,
                                                 uncertain_point_coords)


def test_sample_points_reads_pixel_centres_exactly() -> None:
    maps = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(4), indexing='ij')
    coords = torch.stack([(xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 3], dim=-1)[None]
    assert torch.allclose(sample_points(maps, coords), maps.flatten(1), atol=1e-5)


def test_importance_sampling_puts_three_quarters_on_the_uncertain_band() -> None:
    logits = torch.full((2, 64, 64), 8.0)
    logits[:, :, 28:36] = 0.0          # the only uncertain region: 1/8 of the area
    torch.manual_seed(0)
    coords = uncertain_point_coords(logits, 4000, 3.0, 0.75)
    assert coords.shape == (2, 4000, 2)
    in_band = ((coords[..., 0] * 64 >= 28) & (coords[..., 0] * 64 < 36)).float()
    # the 3000 important points come from 12000 candidates, ~1500 of them in the band: the band
    # fills ~1500 of the important slots (+ 1/8 of the rest); uniform sampling alone would give 1/8
    assert float(in_band[:, :3000].mean()) > 0.45
    assert abs(float(in_band[:, 3000:].mean()) - 0.125) < 0.05
    uniform = uncertain_point_coords(logits, 4000, 3.0, 0.0)
    assert abs(float(((uniform[..., 0] * 64 >= 28) & (uniform[..., 0] * 64 < 36)).float().mean()) - 0.125) < 0.03


def test_uniform_points_estimate_the_dense_loss_at_the_decoder_size() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 32, 32)
    logits = torch.nn.functional.interpolate(logits, size=(256, 256), mode='bilinear')[:, 0] * 3
    gt = [torch.rand(1, 512, 512) > 0.7, torch.rand(1, 300, 300) > 0.5]
    dense = mask_losses(logits, gt, 256, 2.0, 0.5)
    points = point_sampled_mask_losses(logits, gt, num_points=60000, importance_sample_ratio=0.0)
    assert abs(float(points['loss_mask']) - float(dense['loss_mask'])) < 0.03 * float(dense['loss_mask'])
    assert abs(float(points['loss_dice']) - float(dense['loss_dice'])) < 0.03


def test_point_loss_gradient_is_sparse_and_mismatch_raises() -> None:
    logits = torch.zeros(1, 256, 256, requires_grad=True)
    losses = point_sampled_mask_losses(logits, [torch.ones(1, 100, 100, dtype=torch.bool)], num_points=500)
    sum(losses.values()).backward()
    touched = int((logits.grad != 0).sum())
    assert 0 < touched <= 4 * 500        # bilinear: at most 4 pixels per point
    with pytest.raises(ValueError, match='ground-truth masks'):
        point_sampled_mask_losses(torch.zeros(2, 256, 256), [torch.ones(1, 8, 8, dtype=torch.bool)])


def test_official_switches_train_full_embeddings_with_the_point_loss(tiny_checkpoint: Path,
                                                                   synthetic_vessels: Path) -> None:
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel
    kwargs = dict(dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False)
    with pytest.raises(ValueError, match='exclude each other'):
        Sa2VAVesselModel(str(tiny_checkpoint), trainable=dict(embeddings=True), **kwargs)
    torch.manual_seed(0)
    model = Sa2VAVesselModel(str(tiny_checkpoint), trainable=dict(token_rows=False, embeddings=True),
                             mask_loss='points', point_loss=dict(num_points=2000), **kwargs)
    groups = model.trainable_groups()
    assert 'token_rows' not in groups
    embed = model.sa2va.language_model.get_input_embeddings().weight
    lm_head = model.sa2va.language_model.lm_head.weight
    assert embed.requires_grad and lm_head.requires_grad
    assert {id(p) for _, p in groups['embeddings']} == {id(embed), id(lm_head)}
    before = {n: p.detach().clone() for g in groups.values() for n, p in g}
    dataset = VesselSegDataset(str(synthetic_vessels), 'train', str(tiny_checkpoint), max_dynamic_patch=1)
    batch = vessel_collate([dataset[0], dataset[1]])
    losses = model(batch['data'], batch['data_samples'], mode='loss')
    sum(losses.values()).backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3).step()
    for group, params in groups.items():
        assert any(not torch.equal(p, before[n]) for n, p in params), f'{group} did not move'
    # every row of lm_head got a gradient (the answer's cross-entropy), not only [SEG]'s
    assert int((lm_head.grad.abs().sum(1) > 0).sum()) == lm_head.shape[0]

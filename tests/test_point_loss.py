"""The official recipe's point-sampled mask loss and the full embed_tokens/lm_head switch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.models.losses import (
    mask_losses,
    point_sampled_mask_losses,
    sample_points,
    uncertain_point_coords,
)


def test_sample_points_reads_pixel_centres_exactly() -> None:
    maps = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(4), indexing='ij')
    coords = torch.stack([(xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 3], dim=-1)[None]
    assert torch.allclose(sample_points(maps, coords), maps.flatten(1), atol=1e-5)


def test_importance_sampling_puts_three_quarters_on_the_uncertain_band() -> None:
    logits = torch.full((2, 64, 64), 8.0)
    logits[:, :, 28:36] = 0.0  # the only uncertain region: 1/8 of the area
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
    assert 0 < touched <= 4 * 500  # bilinear: at most 4 pixels per point
    with pytest.raises(ValueError, match='ground-truth masks'):
        point_sampled_mask_losses(torch.zeros(2, 256, 256), [torch.ones(1, 8, 8, dtype=torch.bool)])


def test_official_switches_train_full_embeddings_with_the_point_loss(
    tiny_checkpoint: Path, synthetic_vessels: Path
) -> None:
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    kwargs = dict(dtype='float32', lora=dict(r=4, alpha=8, dropout=0.0), gradient_checkpointing=False)
    with pytest.raises(ValueError, match='exclude each other'):
        Sa2VAVesselModel(str(tiny_checkpoint), trainable=dict(embeddings=True), **kwargs)
    torch.manual_seed(0)
    model = Sa2VAVesselModel(
        str(tiny_checkpoint),
        trainable=dict(token_rows=False, embeddings=True),
        mask_loss='points',
        point_loss=dict(num_points=2000),
        **kwargs,
    )
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


def test_global_batch_is_kept_by_accumulation_on_any_world_size() -> None:
    from mmengine.config import Config

    from projects.sa2va_vessel.engine.runner import accumulate_to_global_batch, warmup_cosine_schedule
    from tests.conftest import REPO_ROOT

    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora_official.py'))
    assert cfg.global_batch_size == 256 and cfg.train_dataloader.batch_size == 2
    assert accumulate_to_global_batch(cfg, world_size=8) == 16  # the official 2 x 16 x 8
    assert cfg.optim_wrapper.accumulative_counts == 16
    assert accumulate_to_global_batch(cfg, world_size=2) == 64
    with pytest.raises(ValueError, match='not a multiple'):
        accumulate_to_global_batch(cfg, world_size=3)
    assert cfg.param_scheduler == warmup_cosine_schedule(
        2000, warmup_ratio=0.05, warmup_start_factor=1e-5, eta_min_ratio=0.0
    )
    assert cfg.model.mask_loss == 'points' and cfg.model.trainable.embeddings and not cfg.model.trainable.token_rows


@pytest.mark.slow
def test_the_official_arm_runs(tiny_checkpoint: Path, synthetic_vessels: Path, tmp_path: Path, monkeypatch) -> None:
    """configs/vessel_lora_official.py trains (guard on) with the tiny checkpoint: accumulation from
    the global batch, the official warm-up, the point loss and the whole embeddings."""
    from projects.sa2va_vessel.engine import train
    from projects.sa2va_vessel.engine.utils import unwrap_model
    from tests.conftest import REPO_ROOT
    from tests.toy_runs import OFFICIAL_SCHEDULE, in_process_cfg, run_length

    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    cfg = in_process_cfg(
        REPO_ROOT / 'configs' / 'vessel_lora_official.py',
        tmp_path,
        {
            'deepspeed': 'none',
            'optim_wrapper.type': 'SyncFreeOptimWrapper',
            'mixed_precision': None,
            'global_batch_size': 2,
            'train_dataloader.batch_size': 1,
            'model.dtype': 'float32',
            'model.lora': dict(r=4, alpha=8, dropout=0.0),
            'model.gradient_checkpointing': False,
            # the recipe is under test, not compile: inductor on a CPU took ~30 s per new shape
            'model.compile_llm_layers': False,
            'model.compile_frozen_encoders': False,
            'model.point_loss.num_points': 1000,
            'train_dataloader.num_workers': 0,
            'train_dataloader.persistent_workers': False,
            'train_dataloader.dataset.max_dynamic_patch': 1,
            'val_dataloader.dataset.max_dynamic_patch': 1,
            'val_dataloader.num_workers': 0,
            'val_dataloader.persistent_workers': False,
            'optim_wrapper.optimizer.lr': 1e-2,
            **run_length(4, OFFICIAL_SCHEDULE),
            'train_cfg.val_interval': 100,
            'default_hooks.validate_before_train': None,
            'default_hooks.val_visualization': None,
            'default_hooks.checkpoint.interval': 100,
            'default_hooks.gradient_guard.interval': 1,
            'default_hooks.logger.interval': 1,
        },
    )
    runner = train(cfg)
    model = unwrap_model(runner.model)
    assert runner.optim_wrapper._accumulative_counts == 2  # 2 = 1 per step x 1 process x 2
    assert model.mask_loss == 'points' and 'embeddings' in model.trainable_groups()
    warmup = runner.param_schedulers[0]
    assert type(warmup).__name__ == 'LinearLR' and warmup.start_factor == 1e-5

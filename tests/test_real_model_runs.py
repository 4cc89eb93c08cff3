"""The real (tiny) Sa2VA model through the runners: the guard catches the seed's bug, and two
ZeRO-2 ranks under torchrun read disjoint data and hold equal weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from projects.sa2va_vessel.engine import train
from tests.conftest import REPO_ROOT, free_port, repo_env, run_cmd
from tests.toy_runs import in_process_cfg, read_trace

CONFIG = REPO_ROOT / 'tests' / 'configs' / 'tiny_real.py'


def _env(checkpoint: Path, data: Path, **extra: str) -> dict[str, str]:
    return repo_env({'SA2VA_MODEL_PATH': str(checkpoint), 'VESSEL_DATA_ROOT': str(data), **extra})


def test_forward_under_no_grad_is_stopped_by_the_guard(
    tiny_checkpoint, synthetic_vessels, tmp_path, monkeypatch
) -> None:
    """The seed's bug: forward under torch.no_grad() and the loss patched to require grad."""
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    original = Sa2VAVesselModel.loss

    def seed_bug_loss(self, data, data_samples=None):
        with torch.no_grad():
            losses = original(self, data, data_samples)
        return {k: v.detach().requires_grad_(True) for k, v in losses.items()}

    monkeypatch.setattr(Sa2VAVesselModel, 'loss', seed_bug_loss)
    cfg = in_process_cfg(CONFIG, tmp_path, {'deepspeed': 'none'})
    with pytest.raises(
        RuntimeError,
        match='no autograd path to these trainable groups: lora, token_rows, text_hidden_fcs, mask_decoder, projector',
    ):
        train(cfg)
    assert not (tmp_path / 'trace_rank0.jsonl').exists(), 'no iteration may complete'


def test_two_rank_zero2_disjoint_samples_and_equal_weights(tiny_checkpoint, synthetic_vessels, tmp_path) -> None:
    run_cmd(
        [
            'bash',
            str(REPO_ROOT / 'tools' / 'dist_train.sh'),
            str(CONFIG),
            '2',
            '--work-dir',
            str(tmp_path),
            '--deepspeed',
            'deepspeed_zero2',
        ],
        env=_env(tiny_checkpoint, synthetic_vessels, PORT=str(free_port())),
        timeout=600,
    )
    ranks = [read_trace(tmp_path, rank) for rank in (0, 1)]
    for trace in ranks:
        assert [r['iter'] for r in trace] == [0, 1, 2]
    seen = [path for trace in ranks for r in trace for path in r['indices']]
    assert len(seen) == len(set(seen)) == 6, 'the ranks must read disjoint samples'
    for step in range(3):
        assert ranks[0][step]['weights'] == ranks[1][step]['weights'], f'ranks differ after step {step}'
    assert len({r['weights'] for r in ranks[0]}) == 3, 'the weights must change every step'


def test_training_checkpoint_reloads_to_the_same_predictions(
    tiny_checkpoint, synthetic_vessels, tmp_path, monkeypatch
) -> None:
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.engine.utils import unwrap_model
    from projects.sa2va_vessel.models.export import build_model_from_config
    from projects.sa2va_vessel.models.training_checkpoint import load_training_checkpoint

    monkeypatch.setenv('SA2VA_MODEL_PATH', str(tiny_checkpoint))
    monkeypatch.setenv('VESSEL_DATA_ROOT', str(synthetic_vessels))
    cfg = in_process_cfg(CONFIG, tmp_path, {'deepspeed': 'none', 'default_hooks.checkpoint.interval': 3})
    runner = train(cfg)
    trained = unwrap_model(runner.model).eval()
    dataset = runner.val_dataloader.dataset
    batch = vessel_collate([dataset[i] for i in range(len(dataset))])
    expected = trained(batch['data'], batch['data_samples'], mode='predict')

    fresh = build_model_from_config(str(CONFIG), model_path=str(tiny_checkpoint)).eval()
    before = fresh(batch['data'], batch['data_samples'], mode='predict')
    load_training_checkpoint(fresh, tmp_path / 'iter_3.pth')
    after = fresh(batch['data'], batch['data_samples'], mode='predict')
    trained_state = {n: p for n, p in trained.named_parameters() if p.requires_grad}
    for name, param in fresh.named_parameters():
        if name in trained_state:
            assert torch.equal(param, trained_state[name]), f'{name} did not reload bit-exactly'
    for e, b, a in zip(expected, before, after):
        assert float((e['prob'] - b['prob']).abs().max()) > 1e-3, 'training must have changed the predictions'
        # same weights; CPU kernels may still round the last float32 bit differently (seen: 6e-8)
        torch.testing.assert_close(a['prob'], e['prob'], rtol=0, atol=1e-6)

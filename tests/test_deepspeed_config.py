"""The DeepSpeed json's "auto" entries, filled from the mmengine config."""

from __future__ import annotations

import json

from mmengine.config import Config

from projects.sa2va_vessel.engine.runner import REPO_ROOT, deepspeed_config_path, free_port, resolve_deepspeed_config


def _resolved(world_size: int = 1, **changes) -> dict:
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora.py'))
    cfg.merge_from_dict(changes)
    ds = json.loads(deepspeed_config_path(cfg.deepspeed).read_text())
    return resolve_deepspeed_config(ds, cfg, on_gpu=True, world_size=world_size)


def test_auto_entries_follow_the_config():
    ds = _resolved()
    assert ds['train_micro_batch_size_per_gpu'] == 32 and ds['gradient_accumulation_steps'] == 1
    assert ds['gradient_clipping'] == 1.0 and ds['bf16']['enabled'] is True and ds['fp16']['enabled'] is False


def test_bf16_overflow_scan_only_without_the_guard():
    # the guard stops the run on a non-finite gradient, so DeepSpeed's per-gradient scan is redundant
    assert _resolved()['bf16']['check_grad_overflow'] is False
    assert _resolved(default_hooks=dict(gradient_guard=None))['bf16']['check_grad_overflow'] is True
    assert _resolved(default_hooks=dict(gradient_guard=dict(check=False)))['bf16']['check_grad_overflow'] is True


def test_gradient_reduction_overlaps_only_with_several_ranks():
    # one rank reduces nothing; overlap_comm would only add a device sync at the end of each backward
    assert _resolved(world_size=1)['zero_optimization']['overlap_comm'] is False
    assert _resolved(world_size=8)['zero_optimization']['overlap_comm'] is True


def test_the_sync_free_norm_mask_equals_deepspeeds():
    import torch
    from deepspeed.runtime import utils as ds_utils
    from deepspeed.runtime.zero import stage_1_and_2

    from projects.sa2va_vessel.engine import deepspeed_sync_free

    original = ds_utils.mask_nan_or_inf_with_val_inplace  # DeepSpeed's, unless a run in this process installed ours
    values = torch.tensor([1.5, float('nan'), float('inf'), -float('inf'), 0.0, -2.0])
    ours = values.clone()
    deepspeed_sync_free.mask_nan_or_inf_inplace(ours, device=ours.device)
    assert ours.tolist() == [1.5, -1.0, -1.0, -1.0, 0.0, -2.0]
    if original is not deepspeed_sync_free.mask_nan_or_inf_inplace:
        theirs = values.clone()
        original(theirs, device=theirs.device)
        assert torch.equal(ours, theirs)
    scalar = torch.tensor(float('nan'))  # what ZeRO passes: the 0-dim total norm
    deepspeed_sync_free.mask_nan_or_inf_inplace(scalar)
    assert scalar.item() == -1.0
    assert deepspeed_sync_free.install() == [
        'deepspeed.runtime.utils.mask_nan_or_inf_with_val_inplace',
        'deepspeed.runtime.zero.stage_1_and_2.mask_nan_or_inf_with_val_inplace',
        'DeepSpeedZeroOptimizer.get_grad_norm_direct',
    ]
    assert stage_1_and_2.mask_nan_or_inf_with_val_inplace is deepspeed_sync_free.mask_nan_or_inf_inplace
    assert stage_1_and_2.DeepSpeedZeroOptimizer.get_grad_norm_direct is deepspeed_sync_free.fused_grad_norm_direct


# One rank of ZeRO-2 on the CPU (gloo): DeepSpeed's own per-tensor norm and the fused one, on the
# optimizer's real partition gradients, finite and with a NaN planted, and on mixed dtypes.
_FUSED_NORM_SCRIPT = """
import json, os, torch, deepspeed
from deepspeed.runtime.zero.stage_1_and_2 import DeepSpeedZeroOptimizer
from projects.sa2va_vessel.engine import deepspeed_sync_free
theirs = DeepSpeedZeroOptimizer.get_grad_norm_direct
torch.manual_seed(0)
model = torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(6)])
cfg = dict(train_micro_batch_size_per_gpu=2, gradient_accumulation_steps=1, gradient_clipping=1.0,
           zero_allow_untested_optimizer=True, zero_optimization=dict(stage=2))
engine, opt, _, _ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters()), config=cfg)
engine.backward(engine(torch.randn(2, 8)).square().sum() * 1e3)
deepspeed_sync_free.install()
grads, params = opt.averaged_gradients[0], opt.params_in_partition[0]
out = dict(n=len(grads), theirs=theirs(opt, grads, params).item(), ours=opt.get_grad_norm_direct(grads, params).item())
mixed = [g.to(torch.bfloat16) if i % 2 else g for i, g in enumerate(grads)]
out.update(mixed_theirs=theirs(opt, mixed, params).item(), mixed_ours=opt.get_grad_norm_direct(mixed, params).item())
grads[3].view(-1)[0] = float('nan')
out.update(nan_theirs=theirs(opt, grads, params).item(), nan_ours=opt.get_grad_norm_direct(grads, params).item())
print('RESULT', json.dumps(out))
"""


def test_the_fused_zero_gradient_norm_equals_deepspeeds(tmp_path):
    import json
    import os
    import subprocess
    import sys

    env = dict(
        os.environ,
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        RANK='0',
        WORLD_SIZE='1',
        LOCAL_RANK='0',
        CUDA_VISIBLE_DEVICES='',
    )
    proc = subprocess.run(
        [sys.executable, '-c', _FUSED_NORM_SCRIPT], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(line[0][len('RESULT ') :])
    assert out['n'] == 12 and out['theirs'] > 1.0  # every weight and bias, a norm that clipping changes
    assert out['ours'] == out['theirs'] and out['mixed_ours'] == out['mixed_theirs']
    assert out['nan_ours'] == out['nan_theirs'] == -1.0

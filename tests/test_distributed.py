"""Two CPU processes under torchrun (tools/dist_train.sh): DeepSpeed ZeRO-2 and plain DDP,
on gloo."""

from __future__ import annotations

import torch

from tests.conftest import REPO_ROOT, free_port, repo_env, run_cmd
from tests.toy_model import TOY_GROUPS
from tests.toy_runs import TOY_TRAINABLE, read_trace, run_length_args, tensorboard_scalars

STEPS = 3


def dist_train(work_dir, *args: str) -> str:
    # Cold cache: DeepSpeed JIT-builds its CPU shared-memory comm op once (~1 min).
    out = run_cmd(
        [
            'bash',
            str(REPO_ROOT / 'tools' / 'dist_train.sh'),
            'tests/configs/toy.py',
            '2',
            '--work-dir',
            str(work_dir),
            '--deepspeed',
            'deepspeed_zero2',
            '--cfg-options',
            *run_length_args(STEPS),
            'default_hooks.checkpoint.interval=1',
            *args,
        ],
        env=repo_env({'PORT': str(free_port())}),
        timeout=400,
    )
    return out.stdout


def test_two_ranks_zero2_disjoint_data_equal_weights_and_resume(tmp_path):
    first = tmp_path / 'first'
    log = dist_train(first)
    assert 'every trainable group got a gradient' in log
    assert 'every trainable group changed after the first optimizer step' in log

    ranks = [read_trace(first, rank) for rank in (0, 1)]
    for trace in ranks:
        assert [r['iter'] for r in trace] == list(range(STEPS))
    # Each rank consumed its own samples: no index seen by both ranks, none twice.
    seen = [i for trace in ranks for r in trace for i in r['indices']]
    assert len(seen) == len(set(seen)) == 2 * 2 * STEPS
    # After every step both ranks hold the same trainable weights, and they moved.
    for step in range(STEPS):
        assert ranks[0][step]['weights'] == ranks[1][step]['weights'], f'step {step}'
    assert len({r['weights'] for r in ranks[0]}) == STEPS

    # Checkpoint: a DeepSpeed directory whose module state has trainable weights only.
    ckpt_dir = first / f'iter_{STEPS}.pth'
    model_states = torch.load(ckpt_dir / 'mp_rank_00_model_states.pt', map_location='cpu', weights_only=False)
    assert set(model_states['module']) == TOY_TRAINABLE
    assert len(list(ckpt_dir.glob('zero_pp_rank_*_optim_states.pt'))) == 2

    scalars = tensorboard_scalars(first)
    for tag in ('loss', 'loss_llm', 'loss_mask', 'loss_dice', 'lr', *(f'grad_norm/{g}' for g in TOY_GROUPS)):
        assert len(scalars.get(tag, [])) == STEPS, tag

    # Resume from the checkpoint before the last step in a fresh work dir: the last step
    # repeats exactly on both ranks (same samples, same weights after it).
    second = tmp_path / 'second'
    log = dist_train(second, '--resume', str(first / f'iter_{STEPS - 1}.pth'))
    assert f'resumed epoch: 0, iter: {STEPS - 1}' in log
    for rank in (0, 1):
        assert read_trace(second, rank) == ranks[rank][STEPS - 1 :]


def test_two_ranks_plain_ddp_on_cpu(tmp_path):
    # --deepspeed none under torchrun: mmengine's DDP wrapper, gloo, device_ids=None on CPU.
    run_cmd(
        [
            'bash',
            str(REPO_ROOT / 'tools' / 'dist_train.sh'),
            'tests/configs/toy.py',
            '2',
            '--work-dir',
            str(tmp_path),
            '--deepspeed',
            'none',
            '--cfg-options',
            *run_length_args(STEPS),
        ],
        env=repo_env({'PORT': str(free_port())}),
        timeout=300,
    )
    ranks = [read_trace(tmp_path, rank) for rank in (0, 1)]
    seen = [i for trace in ranks for r in trace for i in r['indices']]
    assert len(seen) == len(set(seen)) == 2 * 2 * STEPS
    assert [r['weights'] for r in ranks[0]] == [r['weights'] for r in ranks[1]]
    ckpt = torch.load(tmp_path / f'iter_{STEPS}.pth', map_location='cpu', weights_only=False)
    assert set(ckpt['state_dict']) == TOY_TRAINABLE

"""tools/test.py on the tiny Sa2VA: it reproduces the best validation Dice of training from the
best checkpoint; generation mode finds [SEG] where the model emits it and counts where not."""

from __future__ import annotations

import csv
import json
import os
import uuid

import pytest
import torch
from mmengine.config import Config

from tests.conftest import REPO_ROOT

# one xdist worker runs this module: its module-scoped fixtures are built once, not once per worker
pytestmark = pytest.mark.xdist_group('offline_eval')


@pytest.fixture(scope='module')
def trained(tmp_path_factory, tiny_checkpoint, synthetic_vessels):
    """One training step of the tiny demo config with validation after it (best checkpoint)."""
    from projects.sa2va_vessel.engine import train

    work = tmp_path_factory.mktemp('tiny_train')
    env = {'SA2VA_MODEL_PATH': str(tiny_checkpoint), 'VESSEL_DATA_ROOT': str(synthetic_vessels)}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        cfg = Config.fromfile(str(REPO_ROOT / 'configs' / 'vessel_lora_tiny.py'))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    # Constant lr (no warm-up): one step must move the weights visibly.
    cfg.merge_from_dict(
        {
            'train_cfg.max_iters': 1,
            'train_cfg.val_interval': 1,
            'param_scheduler': None,
            'default_hooks.checkpoint.interval': 1000,
            'default_hooks.val_visualization.num_images': 1,
            'default_hooks.validate_before_train': None,
        }
    )
    cfg.work_dir = str(work)
    cfg.experiment_name = f'tiny_{uuid.uuid4().hex[:8]}'
    cfg.launcher = 'none'
    train(cfg)
    return work


def test_test_py_reproduces_best_val_dice(trained, tmp_path):
    from projects.sa2va_vessel.evaluation.cli import test_main

    record = json.loads((trained / 'best_checkpoint.json').read_text())
    best = trained / record['checkpoint']
    state = torch.load(best, map_location='cpu', weights_only=False)['state_dict']
    assert any('lora_B' in k and v.abs().max() > 0 for k, v in state.items())  # it trained

    out = tmp_path / 'eval'
    summary = test_main(
        [
            str(trained / 'vessel_lora_tiny.py'),
            str(best),
            '--split',
            'val',
            '--out',
            str(out),
            '--mode',
            'both',
            '--num-overlays',
            '1',
        ]
    )
    teacher = summary['modes']['teacher']['metrics']
    assert summary['threshold_source'] == 'best_checkpoint.json'
    assert teacher['vessel/threshold'] == record['threshold']
    assert abs(teacher['vessel/best_dice'] - record['score']) <= 1e-6
    # At the recorded threshold the pooled Dice is that same best Dice.
    assert abs(teacher['vessel/global_dice'] - record['score']) <= 1e-6
    for key in ('vessel/mean_dice', 'vessel/global_cldice', 'vessel/global_roc_auc'):
        assert key in teacher

    gen = summary['modes']['generate']['metrics']
    assert gen['vessel/n_images'] == teacher['vessel/n_images'] == 2
    assert 0 <= gen['vessel/n_missing_seg'] <= 2
    assert gen['vessel/missing_seg_rate'] == gen['vessel/n_missing_seg'] / 2

    written = json.loads((out / 'summary.json').read_text())
    assert written['modes']['teacher']['metrics']['vessel/best_dice'] == teacher['vessel/best_dice']
    for mode in ('teacher', 'generate'):
        rows = list(csv.DictReader(open(out / mode / 'per_image.csv')))
        assert len(rows) == 2 and {'image', 'dice', 'cldice', 'roc_auc', 'tp'} <= set(rows[0])
        assert (out / mode / 'threshold_curve.png').is_file()
        assert len(list((out / mode / 'overlays').glob('*.png'))) == 1
    rows = list(csv.DictReader(open(out / 'generate' / 'per_image.csv')))
    assert sum(r['missing_seg'] == 'True' for r in rows) == gen['vessel/n_missing_seg']


def test_generation_mode_reads_seg_step_and_counts_missing(tiny_checkpoint, synthetic_vessels):
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.evaluation import VesselSegMetric
    from projects.sa2va_vessel.evaluation.inference import load_eval_model
    from projects.sa2va_vessel.models.generation import greedy_seg_generate, stop_token_ids

    # An exported (official-layout) directory, nothing loaded on top.
    model, info = load_eval_model(None, tiny_checkpoint, device='cpu')
    assert info['kind'] == 'export' and info['n_loaded'] == 0
    with torch.no_grad():  # make the adapters matter, so a misaligned read would show
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    ds = VesselSegDataset(
        str(synthetic_vessels), 'val', str(tiny_checkpoint), max_dynamic_patch=1, random_question=False
    )
    batch = vessel_collate([ds[0], ds[1]])
    stops = stop_token_ids(ds.tokenizer, ds.template)
    seg = ds.tokenizer.convert_tokens_to_ids('[SEG]')
    answers = [
        [int(t) for t, lab in zip(batch['data']['input_ids'][i], batch['data']['labels'][i]) if lab != -100]
        for i in range(2)
    ]
    assert seg in answers[0]
    without_seg = [t if t != seg else ds.tokenizer.convert_tokens_to_ids('.') for t in answers[1]]

    gen = greedy_seg_generate(model, batch, stops, forced_answers=[answers[0], without_seg])
    assert (gen[0]['n_seg'], gen[0]['missing_seg']) == (1, False)
    assert (gen[1]['n_seg'], gen[1]['missing_seg'], gen[1]['prob']) == (0, True, None)
    # The hidden state of the step whose input is [SEG] (KV cache) = the teacher-forced one.
    teacher = model.val_step(batch)
    assert torch.allclose(gen[0]['prob'], teacher[0]['prob'], atol=1e-5)

    metric = VesselSegMetric()
    metric.process(batch, [{'prob': gen[0]['prob'], 'missing_seg': False}, {'prob': None, 'missing_seg': True}])
    per_image = [r['masks'][0]['dice'] for r in metric.results]
    assert per_image[1] == 0.0  # a missing [SEG] scores as an empty mask
    result = metric.evaluate(2)
    assert result['vessel/n_missing_seg'] == 1 and result['vessel/n_images'] == 2

    free = greedy_seg_generate(model, batch, stops, max_new_tokens=6)  # the model's own words
    for g in free:
        assert g['missing_seg'] == (g['n_seg'] < 1) and len(g['generated_ids']) <= 6


def test_test_py_on_exported_directory(trained, tiny_checkpoint):
    from projects.sa2va_vessel.evaluation.cli import test_main

    summary = test_main([str(trained / 'vessel_lora_tiny.py'), str(tiny_checkpoint), '--mode', 'teacher'])
    assert summary['checkpoint_kind'] == 'export' and summary['best_record'] is None
    assert summary['threshold_source'] == 'config'
    metrics = summary['modes']['teacher']['metrics']
    assert metrics['vessel/n_images'] == 2 and metrics['vessel/threshold'] == 0.5


def test_test_split_refuses_the_sweep_and_writes_the_results_table(trained, synthetic_vessels, tmp_path):
    import shutil

    from projects.sa2va_vessel.evaluation.cli import test_main

    data = tmp_path / 'data'
    shutil.copytree(synthetic_vessels, data)
    stems = (data / 'splits' / 'train.txt').read_text().split()
    (data / 'splits' / 'train.txt').write_text(''.join(s + '\n' for s in stems[2:]))
    (data / 'splits' / 'test.txt').write_text(''.join(s + '\n' for s in stems[:2]))
    (data / 'splits' / 'PROTOCOL.md').write_text('# Protocol: synthetic_holdout\n')
    record = json.loads((trained / 'best_checkpoint.json').read_text())
    args = [
        str(trained / 'vessel_lora_tiny.py'),
        str(trained / record['checkpoint']),
        '--split',
        'test',
        '--mode',
        'teacher',
        '--num-overlays',
        '0',
        '--n-boot',
        '200',
        '--cfg-options',
        f'val_dataloader.dataset.data_root={data}',
    ]
    out = tmp_path / 'refused'
    summary = test_main(args + ['--out', str(out)])
    metrics = summary['modes']['teacher']['metrics']
    assert summary['protocol'] == 'synthetic_holdout' and summary['threshold_source'] == 'best_checkpoint.json'
    assert not any(k.startswith(('vessel/best_thr', 'vessel/best_dice')) for k in metrics)
    assert 'vessel/global_dice' in metrics and not (out / 'teacher' / 'threshold_curve.png').exists()
    assert any('refused' in n for n in summary['modes']['teacher']['notes'])
    table = list(csv.DictReader(open(out / 'teacher' / f'results_{data.name}_test.csv')))
    assert [r['metric'] for r in table][:2] == ['dice', 'cldice'] and len(table) == 13
    assert {r['protocol'] for r in table} == {'synthetic_holdout'} and {r['n'] for r in table} == {'2'}
    per_image = list(csv.DictReader(open(out / 'teacher' / 'per_image.csv')))
    dice = [float(r['dice']) for r in per_image]
    assert float(table[0]['mean']) == pytest.approx(sum(dice) / 2)
    md = (out / 'teacher' / f'results_{data.name}_test.md').read_text()
    assert 'protocol: synthetic_holdout' in md and '| hd95 (px) | 2 |' in md

    allowed = test_main(args + ['--allow-test-sweep'])['modes']['teacher']
    assert 'vessel/best_dice_optimistic' in allowed['metrics'] and 'vessel/best_dice' not in allowed['metrics']
    assert any('optimistic' in n for n in allowed['notes'])


def test_generation_with_fp32_trainables_over_bf16_base(tiny_checkpoint, synthetic_vessels):
    """The 24 GB / plain-runner recipe: bf16 base, fp32 trainables. Generation runs outside
    forward(); once the model writes [SEG], the fp32 text_hidden_fcs takes the bf16 hidden state
    (this crashed the first validation after training on the GPU, docs/bench/call17)."""
    from projects.sa2va_vessel.datasets.collate import vessel_collate
    from projects.sa2va_vessel.datasets.vessel_dataset import VesselSegDataset
    from projects.sa2va_vessel.models.generation import greedy_seg_generate, stop_token_ids
    from projects.sa2va_vessel.models.vessel_model import Sa2VAVesselModel

    model = Sa2VAVesselModel(
        str(tiny_checkpoint), dtype='bfloat16', trainable_dtype='float32', gradient_checkpointing=False
    ).eval()
    assert model.sa2va.text_hidden_fcs[0].weight.dtype == torch.float32
    ds = VesselSegDataset(
        str(synthetic_vessels), 'val', str(tiny_checkpoint), max_dynamic_patch=1, random_question=False
    )
    batch = vessel_collate([ds[0]])
    answer = [int(t) for t, lab in zip(batch['data']['input_ids'][0], batch['data']['labels'][0]) if lab != -100]
    gen = greedy_seg_generate(model, batch, stop_token_ids(ds.tokenizer, ds.template), forced_answers=[answer])
    assert gen[0]['n_seg'] == 1 and gen[0]['prob'] is not None and torch.isfinite(gen[0]['prob']).all()

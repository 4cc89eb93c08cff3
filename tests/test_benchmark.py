"""tools/benchmark.py in its CPU mode (tiny shapes): it runs and its report has every field."""
from __future__ import annotations

import json
import math

from tests.conftest import python_cmd, run_cmd

RESULT_FIELDS = {'name', 'batch_size', 'samples_per_s', 'tokens_per_s', 'step_ms', 'breakdown_ms', 'peak_alloc_gib',
                 'first_losses', 'last_loss', 'mfu', 'speedup_vs_plain', 'speedup_vs_official'}
BREAKDOWN = {'vision_fwd', 'llm_fwd', 'sam2_encoder_fwd', 'decoder_fwd', 'loss_fwd', 'forward', 'backward',
             'llm_bwd', 'optimizer'}


def test_benchmark_cpu_tiny(tmp_path):
    out = tmp_path / 'report.json'
    proc = run_cmd(python_cmd('tools/benchmark.py', '--device', 'cpu', '--preset', 'tiny', '--batch-size', '2',
                              '--warmup', '1', '--steps', '1', '--out', str(out)), timeout=300)
    assert 'samples/s' in proc.stdout
    report = json.loads(out.read_text())
    assert report['preset'] == 'tiny' and report['n_tiles'] == 1 and report['failures'] == []
    assert report['flops_per_sample']['total'] > 0
    assert {'torch', 'transformers', 'peft'} <= set(report['versions'])
    rows = {r['name']: r for r in report['results']}
    assert set(rows) == {'plain', 'fast', 'official'}
    for row in rows.values():
        assert RESULT_FIELDS <= set(row), RESULT_FIELDS - set(row)
        assert row['samples_per_s'] > 0 and math.isfinite(row['last_loss'])
        assert BREAKDOWN <= set(row['breakdown_ms']), BREAKDOWN - set(row['breakdown_ms'])
    # the project's path and the plain composition compute the same loss on the same batch and weights
    assert rows['fast']['loss_matches_plain'], rows['fast']['loss_abs_diff']
    assert set(rows['official']['first_losses']) == {'loss_mask', 'loss_dice', 'loss_llm'}


def test_end_to_end_cpu_tiny(tmp_path):
    """--end-to-end trains through tools/train.py's runner with the shipped config and times it."""
    out = tmp_path / 'e2e.json'
    proc = run_cmd(python_cmd(
        'tools/benchmark.py', '--end-to-end', '--device', 'cpu', '--preset', 'tiny', '--batch-size', '2',
        '--image-size', '128x128', '--e2e-steps', '1,1,2', '--workers', '1', '--e2e-deepspeed', 'none',
        '--work-dir', str(tmp_path / 'w'), '--out', str(out),
        '--cfg-options', 'model.compile_llm_layers=False', 'model.compile_frozen_encoders=False'), timeout=600)
    report = json.loads(out.read_text())
    e2e = report['end_to_end']
    assert e2e['config'].endswith('configs/vessel_lora.py') and e2e['deepspeed'] == 'none'
    assert e2e['batch_size'] == 2 and e2e['samples_per_s'] > 0
    split = e2e['split_ms']
    assert set(split) == {'data', 'forward', 'backward', 'optimizer', 'hooks_other', 'iteration'}
    assert all(len(e2e['split_raw_ms'][k]) == 2 for k in ('data', 'forward', 'backward', 'optimizer', 'iteration'))
    assert split['forward'] > 0 and split['backward'] > 0 and split['optimizer'] > 0
    assert split['data'] + split['forward'] + split['backward'] + split['optimizer'] <= split['iteration'] * 1.01
    # the config's hooks ran: validation before training recorded a best checkpoint
    assert (tmp_path / 'w' / 'e2e' / 'run' / 'best_checkpoint.json').is_file()
    # the model-step references of the same process, at the same batch size
    rows = {r['name'] for r in report['model_step']['results']}
    assert rows == {'plain', 'fast'} and e2e['x_plain_model_step'] > 0
    assert 'end-to-end / model step' in proc.stdout

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

"""tools/benchmark.py in its CPU mode (tiny shapes): it runs and its report has every field."""

from __future__ import annotations

import json
import math
import sys

import pytest

from tests._data_support import load_tool
from tests.conftest import python_cmd, run_cmd

RESULT_FIELDS = {
    'name',
    'batch_size',
    'samples_per_s',
    'tokens_per_s',
    'step_ms',
    'breakdown_ms',
    'peak_alloc_gib',
    'first_losses',
    'last_loss',
    'mfu',
    'speedup_vs_plain',
    'speedup_vs_official',
}
BREAKDOWN = {
    'vision_fwd',
    'llm_fwd',
    'sam2_encoder_fwd',
    'decoder_fwd',
    'loss_fwd',
    'forward',
    'backward',
    'llm_bwd',
    'optimizer',
}


def test_benchmark_cpu_tiny(tmp_path):
    out = tmp_path / 'report.json'
    proc = run_cmd(
        python_cmd(
            'tools/benchmark.py',
            '--device',
            'cpu',
            '--preset',
            'tiny',
            '--batch-size',
            '2',
            '--warmup',
            '1',
            '--steps',
            '1',
            '--out',
            str(out),
        ),
        timeout=300,
    )
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
    proc = run_cmd(
        python_cmd(
            'tools/benchmark.py',
            '--end-to-end',
            '--device',
            'cpu',
            '--preset',
            'tiny',
            '--batch-size',
            '2',
            '--image-size',
            '128x128',
            '--e2e-steps',
            '3,1,2',
            '--workers',
            '1',
            '--e2e-deepspeed',
            'none',
            '--work-dir',
            str(tmp_path / 'w'),
            '--out',
            str(out),
            '--profile',
            '--sync-audit',
            '--cfg-options',
            'model.compile_llm_layers=False',
            'model.compile_frozen_encoders=False',
        ),
        timeout=600,
    )
    report = json.loads(out.read_text())
    e2e = report['end_to_end']
    assert e2e['config'].endswith('configs/vessel_lora.py') and e2e['deepspeed'] == 'none'
    # --profile: the split window's tables name the model's stages and the step's parts, and a trace
    table = (tmp_path / 'w' / 'e2e_timing.profile.txt').read_text()
    named = table.split('named ranges')[1]
    for stage in ('sa2va/vision', 'sa2va/llm', 'sa2va/sam2_encoder', 'sa2va/mask_decoder', 'sa2va/losses'):
        assert stage in named, stage
    for stage in ('step/forward', 'step/backward', 'step/optimizer'):
        assert stage in named, stage
    assert json.loads((tmp_path / 'w' / 'e2e_timing.trace.json').read_text())['traceEvents']
    assert e2e['profiled_window'] == 'split' and table.startswith('profiled window: split (2 iterations)')
    assert e2e['batch_size'] == 2 and e2e['samples_per_s'] > 0
    # --sync-audit: a steady warm-up iteration (not the first) was audited; a CPU makes no CUDA sync
    assert e2e['sync_audit'] == {'iteration': 2, 'count': 0, 'sites': []}
    assert 'device synchronisations in iteration 2 (warm-up): 0' in proc.stdout
    split = e2e['split_ms']
    assert set(split) == {'data', 'forward', 'backward', 'optimizer', 'hooks_other', 'iteration'}
    assert all(len(e2e['split_raw_ms'][k]) == 2 for k in ('data', 'forward', 'backward', 'optimizer', 'iteration'))
    assert split['forward'] > 0 and split['backward'] > 0 and split['optimizer'] > 0
    assert split['data'] + split['forward'] + split['backward'] + split['optimizer'] <= split['iteration'] * 1.01
    # the throughput window's iterations (one here) and the trainer's host time over it
    assert len(e2e['window_iteration_ms']['all']) == e2e['steps'] == 1
    host = e2e['host']
    assert host['wall_ms'] > 0 and 0 < host['main_thread_cpu_ms'] <= host['wall_ms'] * 1.05
    assert 0 < host['main_thread_busy_fraction'] <= 1.05
    assert set(host['gc_collections_in_window']) == {'gen0', 'gen1', 'gen2'}
    assert 'host per step: main thread' in proc.stdout
    # the config's hooks ran: validation before training recorded a best checkpoint
    assert (tmp_path / 'w' / 'e2e' / 'run' / 'best_checkpoint.json').is_file()
    # the model-step references of the same process, at the same batch size
    rows = {r['name'] for r in report['model_step']['results']}
    assert rows == {'plain', 'fast'} and e2e['x_plain_model_step'] > 0
    assert 'end-to-end / model step' in proc.stdout


def test_end_to_end_cpu_tiny_qwen(tmp_path):
    """--end-to-end on a Qwen-VL preset (Qwen3-VL: DeepStack, M-RoPE): the preset's inputs carry the
    family's tokenizer and image processor, validation before training runs in both modes (generation
    included), and the timed windows are filled. Kept cheap: micro-batch 1, 2 timed iterations, the
    frozen SAM2 features of the validation images reused, the model step tested separately below."""
    out = tmp_path / 'e2e.json'
    run_cmd(
        python_cmd(
            'tools/benchmark.py',
            '--end-to-end',
            '--device',
            'cpu',
            '--preset',
            'tiny-qwen3_vl',
            '--batch-size',
            '1',
            '--image-size',
            '128x128',
            '--e2e-steps',
            '0,1,1',
            '--workers',
            '0',
            '--e2e-deepspeed',
            'none',
            '--no-model-step',
            '--work-dir',
            str(tmp_path / 'w'),
            '--out',
            str(out),
            '--cfg-options',
            'model.compile_llm_layers=False',
            'model.compile_frozen_encoders=False',
            'val_cfg.max_new_tokens=4',
            'model.sam2_feature_cache_size=4',
            '--profile',
            'throughput',
        ),
        timeout=600,
    )
    e2e = json.loads(out.read_text())['end_to_end']
    assert e2e['preset'] == 'tiny-qwen3_vl' and e2e['batch_size'] == 1 and e2e['samples_per_s'] > 0
    # --profile throughput: the unsynchronised window was profiled, with the step's parts named
    assert e2e['profiled_window'] == 'throughput'
    table = (tmp_path / 'w' / 'e2e_timing.profile.txt').read_text()
    assert table.startswith('profiled window: throughput (1 iterations)')
    named = table.split('named ranges')[1]
    assert all(f'step/{stage}' in named for stage in ('forward', 'backward', 'optimizer')), named
    assert all(len(e2e['split_raw_ms'][k]) == 1 for k in ('data', 'forward', 'backward', 'optimizer', 'iteration'))
    inputs = tmp_path / 'w' / 'inputs_tiny-qwen3_vl'
    assert json.loads((inputs / 'config.json').read_text())['text_config']['model_type'] == 'qwen3_vl_text'
    assert (inputs / 'preprocessor_config.json').is_file()
    record = json.loads((tmp_path / 'w' / 'e2e' / 'run' / 'best_checkpoint.json').read_text())
    assert record['metrics']['vessel/gen_n_images'] == 2  # generation-mode validation ran
    assert 0.0 <= record['metrics']['vessel/gen_missing_seg_rate'] <= 1.0


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_model_step_references_on_qwen_presets(preset):
    """The model step of the Qwen-VL families: the plain composition and the project's path give the same
    losses, every stage is timed, the FLOPs have the vision tower and the merger(s)."""
    from projects.sa2va_vessel.benchmark.core import run_benchmark

    report = run_benchmark(
        preset,
        'cpu',
        batch_size=1,
        image_hw=(128, 128),
        warmup=0,
        steps=1,
        ladder=False,
        official=False,
        fast=True,
        compile_ok=False,
        log=lambda *_: None,
    )
    rows = {r['name']: r for r in report['results']}
    assert set(rows) == {'plain', 'fast'} and report['failures'] == []
    assert rows['fast']['loss_matches_plain'], rows['fast']['loss_abs_diff']
    assert set(rows['plain']['first_losses']) == {'loss_mask', 'loss_dice', 'loss_llm'}
    for row in rows.values():
        assert BREAKDOWN <= set(row['breakdown_ms']) and row['breakdown_ms']['vision_fwd'] > 0
    fl = report['flops_per_sample']
    assert (
        fl['vit'] > 0
        and fl['projector'] > 0
        and fl['total'] == pytest.approx(sum(v for k, v in fl.items() if k != 'total'))
    )


@pytest.mark.parametrize('preset', ['tiny-qwen2_5_vl', 'tiny-qwen3_vl'])
def test_qwen_merger_flops_closed_form_equals_the_counter(preset):
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from projects.sa2va_vessel.benchmark.flops import merger_flops, qwen_vision_flops
    from projects.sa2va_vessel.models.checkpoint import build_preset

    class _Model:  # what the FLOP functions read: ``.sa2va``
        sa2va = build_preset(preset, torch.float32)[0]

    visual, grid = _Model.sa2va.visual, [1, 8, 12]
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        _Model.sa2va.image_embeddings(torch.randn(96, visual.patch_embed.proj.weight[0].numel()), torch.tensor([grid]))
    counted = sum(
        sum(c.values())
        for name, c in counter.get_flop_counts().items()
        if name.endswith('.merger') or name.rsplit('.', 2)[-2:-1] == ['deepstack_merger_list']
    )
    assert merger_flops(_Model.sa2va.arch, 96) == counted > 0
    tower, merger = qwen_vision_flops(_Model, grid, 'cpu')
    assert merger == counted and tower > 0


def test_dataload_with_the_configs_train_transform(tmp_path):
    from mmengine.config import Config

    from projects.sa2va_vessel.benchmark.dataload import run_dataload
    from tests.conftest import REPO_ROOT

    transform = Config.fromfile(str(REPO_ROOT / 'configs/vessel_lora.py')).train_dataloader.dataset.transform.to_dict()
    lines = []
    (row,) = run_dataload(
        sizes=(96,), workers=(0,), n=4, batch_size=2, root=str(tmp_path), log=lines.append, transform=transform
    )
    assert row['transform'] == transform and row['samples'] == 12 and row['samples_per_s'] > 0
    assert 'with VesselAugment' in lines[0]


class _FakeCudaPeak:
    """CUDA's peak-allocation counter, without a GPU: ``allocate`` raises it, a reset drops it."""

    def __init__(self) -> None:
        self.peak = 0

    def allocate(self, n_bytes: int) -> None:
        self.peak = max(self.peak, n_bytes)

    def max_memory_allocated(self, device=None) -> int:
        return self.peak

    def reset_peak_memory_stats(self, device=None) -> None:
        self.peak = 0


def test_end_to_end_peak_survives_the_logger_resets(tmp_path, monkeypatch):
    """mmengine's LoggerHook resets CUDA's peak each time it logs memory; the end-to-end peak must
    still be the run's (the first, guard, step here) and the timed window's, not the last interval's."""
    import torch
    from mmengine.device import get_max_cuda_memory

    from projects.sa2va_vessel.benchmark.end_to_end import StepTimingHook

    cuda = _FakeCudaPeak()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_initialized', lambda: False)  # no synchronize
    monkeypatch.setattr(torch.cuda, 'max_memory_allocated', cuda.max_memory_allocated)
    monkeypatch.setattr(torch.cuda, 'reset_peak_memory_stats', cuda.reset_peak_memory_stats)
    gib = 2**30
    hook = StepTimingHook(str(tmp_path / 't.json'), warmup=5, steps=10, split_steps=3)
    hook.batch_size = 2
    for i in range(18):
        hook.iteration_boundary()
        # iteration 0: the guard's step (30 GiB); iteration 9, in the timed window: 12 GiB; others 8
        cuda.allocate((30 if i == 0 else 12 if i == 9 else 8) * gib)
        hook.after_train_iter(None, i)  # VERY_HIGH: runs before the LoggerHook
        if (i + 1) % 10 == 0:
            get_max_cuda_memory()  # the LoggerHook's memory read, which resets the counter
    summary = hook.summary()
    assert summary['peak_alloc_gib_run'] == 30.0
    assert summary['peak_alloc_gib_timed'] == 12.0


def test_the_sync_audit_names_each_synchronising_call_site():
    import warnings

    from projects.sa2va_vessel.benchmark.sync_audit import SyncAudit

    def reads_a_count_from_the_gpu():
        warnings.warn('called a synchronizing CUDA operation', UserWarning)

    audit = SyncAudit()
    audit.start()
    for _ in range(3):
        reads_a_count_from_the_gpu()
    with pytest.warns(UserWarning, match='unrelated'):
        warnings.warn('unrelated', UserWarning)  # other warnings still reach their handler
    audit.stop()
    reads_a_count_from_the_gpu_after = audit.summary()
    assert reads_a_count_from_the_gpu_after['count'] == 3
    (site,) = reads_a_count_from_the_gpu_after['sites']
    assert 'test_benchmark.py' in site['where'] and '(reads_a_count_from_the_gpu)' in site['where']
    with warnings.catch_warnings(record=True) as after:
        warnings.simplefilter('always')
        reads_a_count_from_the_gpu()  # stopped: no longer recorded, shown as usual
    assert audit.summary()['count'] == 3 and len(after) == 1


def test_a_slow_or_compiling_iteration_is_logged_at_once(tmp_path, monkeypatch):
    """What a run cut off by its time limit still tells: which iterations took long, and whether
    dynamo compiled in them (calls 39-41 lost runs to compiles nothing named)."""
    import time

    import torch

    from projects.sa2va_vessel.benchmark import end_to_end
    from projects.sa2va_vessel.benchmark.end_to_end import StepTimingHook

    hook = StepTimingHook(out=str(tmp_path / 'timing.json'), warmup=1, steps=1, split_steps=1)
    lines = []
    hook.iteration_boundary()  # iteration 1 fetches its batch: its clock starts
    assert hook.note_slow_iteration(1, lines.append) is None  # quick, nothing compiled
    compiled = torch.compile(lambda x: x * 2 + 1, backend='eager')
    compiled(torch.ones(3))
    entry = hook.note_slow_iteration(2, lines.append)
    assert (entry['iteration'], entry['new_graphs']) == (2, 1)
    assert lines == [f'slow iteration 2: {entry["seconds"]:.1f} s, 1 new compiled graphs ({entry["graphs"]} in all)']
    monkeypatch.setattr(end_to_end, 'SLOW_ITERATION_S', 0.001)
    time.sleep(0.01)
    entry = hook.note_slow_iteration(3, lines.append)
    assert entry['new_graphs'] == 0 and entry['seconds'] >= 0.01
    assert [e['iteration'] for e in hook.summary()['slow_iterations']] == [2, 3]


def test_the_users_run_starts_without_the_model_steps_compiled_graphs(tmp_path, monkeypatch):
    """--end-to-end times the user's run first, as a fresh process (tools/train.py) runs it, then the
    model-step references, dynamo's caches reset between them (call 49: the run timed after the
    model step took 233 ms per b8 iteration; call 51: first in its process, 159 ms).
    --model-step-order before keeps the old order, still with the caches reset between them."""
    import torch

    from projects.sa2va_vessel.benchmark import core, end_to_end

    events = []
    monkeypatch.setattr(core, 'run_benchmark', lambda *a, **k: events.append('model step') or {'results': []})
    monkeypatch.setattr(core, 'format_table', lambda report: '')
    monkeypatch.setattr(end_to_end, 'run_end_to_end', lambda *a, **k: events.append('run') or {'samples_per_s': 1.0})
    monkeypatch.setattr(torch.compiler, 'reset', lambda: events.append('compiler reset'))
    cli = load_tool('benchmark')
    base = ['--end-to-end', '--device', 'cpu', '--preset', 'tiny', '--out', str(tmp_path / 'r.json')]
    assert cli.main(base) == 0
    assert events == ['run', 'compiler reset', 'model step']
    events.clear()
    assert cli.main(base + ['--model-step-order', 'before']) == 0
    assert events == ['model step', 'compiler reset', 'run']


def test_stacks_are_written_beside_the_report_on_a_fatal_signal(tmp_path):
    """--stacks: a run stopped by a timeout's SIGABRT leaves its main process's stacks in
    OUT.stacks.txt, apart from its loader workers' dumps."""
    import signal
    import subprocess
    import textwrap

    from tests.conftest import REPO_ROOT

    out = tmp_path / 'r.json'
    script = textwrap.dedent(f"""
        import importlib.util, os, signal, sys
        sys.path.insert(0, {str(REPO_ROOT)!r})
        spec = importlib.util.spec_from_file_location('cli', {str(REPO_ROOT / 'tools' / 'benchmark.py')!r})
        cli = importlib.util.module_from_spec(spec); spec.loader.exec_module(cli)
        from projects.sa2va_vessel.benchmark import end_to_end
        def stopped_by_its_limit(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGABRT)
        end_to_end.run_end_to_end = stopped_by_its_limit
        cli.main(['--end-to-end', '--device', 'cpu', '--preset', 'tiny', '--no-model-step', '--stacks',
                  '--out', {str(out)!r}])
    """)
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGABRT, proc.stderr[-2000:]
    stacks = (tmp_path / 'r.stacks.txt').read_text()
    assert 'Fatal Python error: Aborted' in stacks and 'in stopped_by_its_limit' in stacks, stacks[:1000]
    with pytest.raises(SystemExit):
        load_tool('benchmark').main(['--end-to-end', '--device', 'cpu', '--preset', 'tiny', '--stacks'])

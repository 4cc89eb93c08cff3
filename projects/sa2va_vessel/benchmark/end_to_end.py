"""The end-to-end benchmark: ``tools/train.py CONFIG`` as a user runs it, timed.

``run_end_to_end`` writes synthetic vessel images to disk, loads the config a user would pass to
``tools/train.py`` (``configs/vessel_lora.py`` by default), points its model at
``preset:NAME`` (random weights at the published shape) and its data at those images, and
trains through the same ``engine.runner.train`` that ``tools/train.py`` calls: the runner the
config asks for (DeepSpeed ZeRO-2 or plain), the real ``VesselSegDataset`` with its loader
workers, the config's hooks, validation before training included.

``StepTimingHook`` (added to the config's ``custom_hooks``) times two windows after ``warmup``
iterations:

* throughput: ``steps`` iterations with no synchronisation inside, samples/s = batch x steps /
  time between two synchronised clock reads;
* split: ``split_steps`` more iterations with a device synchronisation at every stage boundary, so
  each stage's wall time is its own: data wait (blocked in the loader), forward, backward,
  optimizer (DeepSpeed's or the optimizer wrapper's ``step``), and the rest of the iteration
  (hooks, the guard's checks, moving the batch to the device, loss bookkeeping).

With ``sync_audit`` one warm-up iteration (not a logged one, not the first) runs under
``torch.cuda.set_sync_debug_mode('warn')`` and the summary lists its synchronising CUDA calls
per call site (``benchmark/sync_audit.py``): what still makes the host wait for the GPU.

With ``profile`` ('split' or 'throughput') torch.profiler records one of the two windows and writes
its tables and a Chrome trace beside ``out``. The split window shows each stage's own cost; the
throughput window shows the run as it really goes, the host running ahead of the GPU, so the host's
waits on the device (synchronisations, allocator calls) appear in its self-CPU table.

Peak memory is read twice: over the whole run (the first, guarded step and validation included)
and over the timed windows only.

Over the throughput window the summary also keeps each iteration's wall time (unsynchronised,
between two iteration ends: a uniformly slower run against a few stalls) and the trainer's host
time (``host``: main-thread CPU against wall, context switches, garbage collections;
``benchmark/host_clock.py``), for the b8 step that the host bounds.

Every iteration that takes longer than ``SLOW_ITERATION_S`` or in which dynamo compiled new graphs
is logged at once (``slow iteration N: S s, K new compiled graphs (T in all)``) and listed in the
summary (``slow_iterations``): a run that its time limit ends still says where the time went (calls
39-41 each lost a run to compiles that nothing named).
"""

from __future__ import annotations

import copy
import functools
import json
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.logging import print_log

from ..engine.utils import logger_interval, unwrap_model
from ..registry import HOOKS
from .host_clock import HostClock
from .sync_audit import SyncAudit

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG = REPO_ROOT / 'configs' / 'vessel_lora.py'
SPLIT_STAGES = ('data', 'forward', 'backward', 'optimizer', 'hooks_other')
SLOW_ITERATION_S = 5.0  # a steady iteration at micro-batch 32 and 8B takes about 1 s


def compiled_graph_count() -> int:
    """How many graphs dynamo has compiled in this process so far (0 without torch.compile)."""
    from torch._dynamo.utils import counters

    return int(counters['stats'].get('unique_graphs', 0))


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


class _TimedIterator:
    """Wraps the train loop's data iterator: each ``next`` marks an iteration boundary."""

    def __init__(self, inner: Any, hook: 'StepTimingHook') -> None:
        self.inner, self.hook = inner, hook

    def __iter__(self) -> '_TimedIterator':
        return self

    def __next__(self) -> Any:
        self.hook.iteration_boundary()
        start = time.perf_counter()
        batch = next(self.inner)
        self.hook.record('data', time.perf_counter() - start)
        return batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@HOOKS.register_module()
class StepTimingHook(Hook):
    """Times the training iterations of a real run (module docstring); writes JSON to ``out``."""

    priority = 'VERY_HIGH'  # patches before the gradient guard does, so the guard's work counts as hooks

    def __init__(
        self,
        out: str,
        warmup: int,
        steps: int,
        split_steps: int,
        profile: Optional[str] = None,
        sync_audit: bool = False,
    ) -> None:
        self.out, self.warmup, self.steps, self.split_steps = Path(out), warmup, steps, split_steps
        self.audit = SyncAudit() if sync_audit else None
        self.audit_iteration: Optional[int] = None
        # torch.profiler over one window, 'split' or 'throughput' (its timings are then the
        # profiler's, not clean)
        if profile not in (None, 'split', 'throughput'):
            raise ValueError(f"profile={profile!r}: expected None, 'split' or 'throughput'")
        self.profile, self._profiler, self.profile_table = profile, None, None
        self.n_next = 0
        self.times: dict[str, list[float]] = {k: [] for k in SPLIT_STAGES + ('iteration',)}
        self._last_boundary: Optional[float] = None
        self._window_start: Optional[float] = None
        self.throughput_s: Optional[float] = None
        # Peaks sampled after every iteration: mmengine's LoggerHook resets CUDA's peak counter each
        # time it logs memory (device.get_max_cuda_memory), so one read at the end sees only the last
        # interval (call 26: 6.8 GiB read against 41.9 GiB logged).
        self.peak_run_bytes = 0
        self.peak_timed_bytes = 0
        self.batch_size: Optional[int] = None
        self.slow_iterations: list[dict] = []
        self._iteration_end: Optional[float] = None
        self._graphs = 0
        self.host = HostClock()
        self.window_iteration_s: list[float] = []  # unsynchronised, each throughput-window iteration

    # -- which window is running ------------------------------------------------------------
    def _split_iteration(self, i: int) -> bool:
        start = self.warmup + self.steps
        return start <= i < start + self.split_steps

    def _in_split(self) -> bool:
        return self._split_iteration(self.n_next - 1)  # the iteration whose batch was fetched last

    def record(self, stage: str, seconds: float) -> None:
        if self._in_split():
            self.times[stage].append(seconds)

    def iteration_boundary(self) -> None:
        """Called at each ``next(loader)``, before iteration ``n_next`` fetches its batch."""
        n = self.n_next
        if n == 0:  # the first iteration's clock starts here, after validation before training
            self._iteration_end, self._graphs = time.perf_counter(), compiled_graph_count()
        if self.audit is not None and n == self.audit_iteration:
            self.audit.start()
        elif self.audit is not None and self.audit.running:
            self.audit.stop()
        if n == self.warmup:  # the throughput window starts
            _sync()
            self.sample_peak()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()  # the timed window's peak starts here
            if self.profile == 'throughput':
                self._start_profiler()
            self.host.start()
            self._window_start = time.perf_counter()
        if n == self.warmup + self.steps:  # ... ends; the split window starts
            _sync()
            self.host.stop()
            if self._profiler is not None:  # the throughput window was profiled
                self._stop_profiler(self.steps)
            self.throughput_s = time.perf_counter() - self._window_start
            if self.profile == 'split':
                self._start_profiler()
        if self._profiler is not None and n == self.warmup + self.steps + self.split_steps:
            self._stop_profiler(self.split_steps)
        if self._split_iteration(n) or self._split_iteration(n - 1):
            _sync()
            now = time.perf_counter()
            if self._split_iteration(n - 1):
                self.times['iteration'].append(now - self._last_boundary)
            self._last_boundary = now
        self.n_next += 1

    def _start_profiler(self) -> None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if torch.cuda.is_available():
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        self._profiler = torch.profiler.profile(activities=activities)
        self._profiler.__enter__()

    def _stop_profiler(self, iterations: int) -> None:
        self._profiler.__exit__(None, None, None)
        sort = 'self_cuda_time_total' if torch.cuda.is_available() else 'self_cpu_time_total'
        averages = self._profiler.key_averages()
        # the model's and the step's named ranges (sa2va/*, step/*): where each stage's time goes
        named = [e for e in averages if e.key.startswith(('sa2va/', 'step/'))]
        self.profile_table = (
            f'profiled window: {self.profile} ({iterations} iterations)\n'
            + averages.table(sort_by=sort, row_limit=40)
            + '\n'
            + averages.table(sort_by='cpu_time_total', row_limit=30)
            # where the host itself spends its time: waits on the device (synchronisations, event
            # waits, cudaMalloc/cudaFree) show up here when the window is not synchronised
            + '\n'
            + averages.table(sort_by='self_cpu_time_total', row_limit=30)
            + f'\nnamed ranges (ms per iteration of the {self.profile} window: CPU total, device total of their kernels):\n'
            + '\n'.join(
                f'{e.key:<24} cpu {e.cpu_time_total / 1e3 / iterations:9.1f}  '
                f'device {getattr(e, "device_time_total", 0.0) / 1e3 / iterations:9.1f}  calls {e.count}'
                for e in sorted(named, key=lambda e: e.key)
            )
        )
        self._profiler.export_chrome_trace(str(self.out.with_suffix('.trace.json')))
        self._profiler = None

    def _in_timed_window(self) -> bool:
        return self.warmup < self.n_next <= self.warmup + self.steps + self.split_steps

    def sample_peak(self) -> None:
        """Folds CUDA's peak since the last reset into the run's (and the timed window's) peak."""
        if not torch.cuda.is_available():
            return
        peak = torch.cuda.max_memory_allocated()
        self.peak_run_bytes = max(self.peak_run_bytes, peak)
        if self._in_timed_window():
            self.peak_timed_bytes = max(self.peak_timed_bytes, peak)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.sample_peak()  # VERY_HIGH priority: before the LoggerHook resets the counter
        self.note_slow_iteration(batch_idx + 1, functools.partial(print_log, logger='current'))

    def note_slow_iteration(self, iteration: int, log: Callable[[str], Any]) -> Optional[dict]:
        """Log and keep iteration ``iteration`` (1-based) if it was slow or compiled graphs.

        Wall time between two iteration ends, unsynchronised: a compile or a stall of seconds shows,
        the device's queue (well under a second) does not.
        """
        now, graphs = time.perf_counter(), compiled_graph_count()
        seconds = now - (self._iteration_end or now)
        new = graphs - self._graphs
        self._iteration_end, self._graphs = now, graphs
        if self.warmup < iteration <= self.warmup + self.steps:  # iteration is 1-based
            self.window_iteration_s.append(seconds)
        if seconds <= SLOW_ITERATION_S and not new:
            return None
        entry = dict(iteration=iteration, seconds=round(seconds, 2), new_graphs=new, graphs=graphs)
        self.slow_iterations.append(entry)
        # the value the summary keeps, so the line and slow_iterations never disagree in rounding
        log(f'slow iteration {iteration}: {entry["seconds"]:.1f} s, {new} new compiled graphs ({graphs} in all)')
        return entry

    def after_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.sample_peak()

    def _timed(self, stage: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._in_split():
                if self._profiler is None:
                    return fn(*args, **kwargs)
                with torch.profiler.record_function(f'step/{stage}'):  # named in a throughput profile
                    return fn(*args, **kwargs)
            _sync()
            start = time.perf_counter()
            with torch.profiler.record_function(f'step/{stage}'):
                out = fn(*args, **kwargs)
            _sync()
            self.record(stage, time.perf_counter() - start)
            return out

        return timed

    # -- hook points ------------------------------------------------------------------------
    def before_train(self, runner: Any) -> None:
        loop = runner.train_loop
        loop.dataloader_iterator = _TimedIterator(loop.dataloader_iterator, self)
        self.batch_size = loop.dataloader.batch_size
        if self.audit is not None:
            self.audit_iteration = self._steady_warmup_iteration(logger_interval(runner))
        model = unwrap_model(runner.model)
        model.forward = self._timed('forward', model.forward)
        wrapper = runner.optim_wrapper
        wrapper.backward = self._timed('backward', wrapper.backward)
        wrapper.step = self._timed('optimizer', wrapper.step)

    def _steady_warmup_iteration(self, interval: int) -> Optional[int]:
        """The last warm-up iteration that is neither the first nor a logged one (those synchronise
        by design: the guard's first-step checks, the log line's values); None if there is none."""
        for i in range(self.warmup - 1, 0, -1):
            if (i + 1) % interval:
                return i
        return None

    def after_train(self, runner: Any) -> None:
        if self.audit is not None:
            self.audit.stop()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.summary(), indent=1))
        if self.profile_table:
            self.out.with_suffix('.profile.txt').write_text(self.profile_table)
            runner.logger.info(f'profile of the {self.profile} window:\n' + self.profile_table)

    def summary(self) -> dict:
        cuda = torch.cuda.is_available()
        self.sample_peak()
        split = {k: 1e3 * sum(v) / max(1, len(v)) for k, v in self.times.items()}
        split['hooks_other'] = max(0.0, split['iteration'] - sum(split[k] for k in SPLIT_STAGES[:-1]))
        step_ms = 1e3 * self.throughput_s / self.steps if self.throughput_s else None
        return {
            'batch_size': self.batch_size,
            'warmup': self.warmup,
            'steps': self.steps,
            'split_steps': self.split_steps,
            'samples_per_s': round(self.batch_size * self.steps / self.throughput_s, 3) if self.throughput_s else None,
            'step_ms': round(step_ms, 2) if step_ms else None,
            'split_ms': {k: round(v, 2) for k, v in split.items()},
            'split_raw_ms': {k: [round(1e3 * x, 2) for x in v] for k, v in self.times.items()},
            'data_wait_fraction': round(split['data'] / split['iteration'], 4) if split['iteration'] else None,
            'peak_alloc_gib_run': round(self.peak_run_bytes / 2**30, 3) if cuda else None,
            'peak_alloc_gib_timed': round(self.peak_timed_bytes / 2**30, 3) if cuda else None,
            'sync_audit': None if self.audit is None else dict(iteration=self.audit_iteration, **self.audit.summary()),
            'profiled_window': self.profile,
            'slow_iterations': self.slow_iterations,
            'window_iteration_ms': _spread_ms(self.window_iteration_s),
            'host': self.host.summary(self.steps),
        }


def _spread_ms(seconds: list[float]) -> Optional[dict]:
    if not seconds:
        return None
    return {
        'min': round(1e3 * min(seconds), 2),
        'median': round(1e3 * statistics.median(seconds), 2),
        'max': round(1e3 * max(seconds), 2),
        'all': [round(1e3 * x, 2) for x in seconds],
    }


def prepare_inputs(
    work_dir: Path, preset: str, image_size: int, n_train: int, n_val: int, tokenizer_from: Optional[Path]
) -> tuple[Path, Path]:
    """Synthetic vessels on disk and a weightless checkpoint folder (tokenizer + config.json)."""
    from ..datasets.synthetic import write_synthetic_dataset
    from ..models.random_checkpoint import write_preset_inputs

    data_root = work_dir / f'synthetic_{image_size}'
    if not (data_root / 'splits' / 'train.txt').is_file():
        n = n_train + n_val
        write_synthetic_dataset(data_root, n=n, seed=0, size=image_size, val_fraction=n_val / n)
    inputs = work_dir / f'inputs_{preset}'
    if not (inputs / 'config.json').is_file():
        write_preset_inputs(inputs, preset, tokenizer_from)
    return data_root, inputs


def end_to_end_config(
    config: Path,
    preset: str,
    device: str,
    data_root: Path,
    inputs: Path,
    work_dir: Path,
    batch_size: Optional[int],
    num_workers: Optional[int],
    warmup: int,
    steps: int,
    split_steps: int,
    deepspeed: Optional[str],
    cfg_options: Optional[dict],
    timing_out: Path,
    profile: Optional[str] = None,
    sync_audit: bool = False,
) -> Config:
    """The user's config, pointed at the preset and the synthetic data, with the timing hook."""
    from ..engine.runner import runner_options, warmup_cosine_schedule

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(dict(cfg_options or {}))
    cfg.model.model_path = f'preset:{preset}'
    cfg.model.device = device
    # the model's vocabulary is the tokenizer's written beside the config, so the data's token ids
    # (the added tokens are the last ids) are the model's
    written = json.loads((inputs / 'config.json').read_text())
    cfg.model.vocab_size = int((written.get('text_config') or written['llm_config'])['vocab_size'])
    if not device.startswith('cuda'):  # CPU: fp32 throughout, as the runner trains there
        cfg.model.dtype, cfg.mixed_precision = 'float32', None
        cfg.model.pop('trainable_dtype', None)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root, loader.dataset.model_path = str(data_root), str(inputs)
    if batch_size is not None:
        cfg.train_dataloader.batch_size = batch_size
    if num_workers is not None:
        cfg.train_dataloader.num_workers = num_workers
        cfg.train_dataloader.persistent_workers = num_workers > 0
    total = warmup + steps + split_steps + 1
    cfg.train_cfg.max_iters = total
    # the config's schedule ends at its own max_iters; the timed run gets the _base_ warm-up + cosine
    cfg.param_scheduler = warmup_cosine_schedule(total) or None
    cfg.train_cfg.val_interval = total + 1  # validation before training (the config's hook) only
    ckpt = cfg.default_hooks.get('checkpoint')
    if ckpt is not None:  # no multi-GB checkpoint write after the timed windows
        ckpt.update(interval=total + 1, save_last=False)
    if deepspeed is not None:
        cfg.merge_from_dict(
            runner_options(deepspeed, cfg.get('mixed_precision', None), cfg.get('master_weights', False))
        )
    cfg.work_dir = str(work_dir / 'run')
    cfg.launcher = 'none'
    cfg.custom_hooks = list(cfg.get('custom_hooks') or []) + [
        dict(
            type='StepTimingHook',
            out=str(timing_out),
            warmup=warmup,
            steps=steps,
            split_steps=split_steps,
            profile=profile,
            sync_audit=sync_audit,
        )
    ]
    return cfg


def run_end_to_end(
    preset: str,
    device: str = 'cuda',
    config: Path = DEFAULT_CONFIG,
    work_dir: Path = Path('work_dirs/bench_e2e'),
    batch_size: Optional[int] = None,
    num_workers: Optional[int] = None,
    warmup: int = 5,
    steps: int = 10,
    split_steps: int = 4,
    image_size: int = 512,
    n_train: int = 256,
    n_val: int = 4,
    tokenizer_from: Optional[Path] = None,
    deepspeed: Optional[str] = None,
    cfg_options: Optional[dict] = None,
    memory_cap_gib: Optional[float] = None,
    label: str = 'e2e',
    profile: Optional[str] = None,
    sync_audit: bool = False,
    log: Callable = print,
) -> dict:
    """Train through ``engine.runner.train`` with the user's config; returns the timing summary."""
    from ..engine.runner import train

    work_dir = Path(work_dir)
    data_root, inputs = prepare_inputs(work_dir, preset, image_size, n_train, n_val, tokenizer_from)
    timing_out = work_dir / f'{label}_timing.json'
    cfg = end_to_end_config(
        Path(config),
        preset,
        device,
        data_root,
        inputs,
        work_dir / label,
        batch_size,
        num_workers,
        warmup,
        steps,
        split_steps,
        deepspeed,
        cfg_options,
        timing_out,
        profile,
        sync_audit,
    )
    if memory_cap_gib is not None and device.startswith('cuda'):
        total = torch.cuda.get_device_properties(0).total_memory / 2**30
        torch.cuda.set_per_process_memory_fraction(min(1.0, memory_cap_gib / total))
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    train(copy.deepcopy(cfg))
    summary = json.loads(timing_out.read_text())
    summary.update(
        label=label,
        preset=preset,
        config=str(config),
        deepspeed=cfg.get('deepspeed'),
        num_workers=cfg.train_dataloader.num_workers,
        image_size=image_size,
        memory_cap_gib=memory_cap_gib,
        wall_s=round(time.perf_counter() - start, 1),
        cfg_options=cfg_options or {},
    )
    if memory_cap_gib is not None and device.startswith('cuda'):
        torch.cuda.set_per_process_memory_fraction(1.0)
    log(format_row(summary))
    audit = summary.get('sync_audit')
    if audit is not None:
        log(f'device synchronisations in iteration {audit["iteration"]} (warm-up): {audit["count"]}')
        for site in audit['sites']:
            log(f'  {site["count"]:4d}  {site["where"]}')
    return summary


def format_row(s: dict) -> str:
    split = ' '.join(f'{k} {v:.1f}' for k, v in s['split_ms'].items())
    profiled = f' (profiled: {s["profiled_window"]} window)' if s.get('profiled_window') else ''
    return (
        f'{s["label"]:>28} bs{s["batch_size"]:<3} {s["samples_per_s"] or float("nan"):8.2f} samples/s  '
        f'{s["step_ms"] or float("nan"):8.1f} ms/step  peak run {s["peak_alloc_gib_run"]} GiB  '
        f'timed {s["peak_alloc_gib_timed"]} GiB  data wait {s["data_wait_fraction"]}  split ms: {split}{profiled}'
        + _host_text(s)
    )


def _host_text(s: dict) -> str:
    host, spread = s.get('host'), s.get('window_iteration_ms')
    if not host or not spread:
        return ''
    gc_counts = '/'.join(str(v) for v in host['gc_collections_in_window'].values())
    return (
        f'\n{"":>28} host per step: main thread {host["main_thread_cpu_ms"]} ms CPU of {host["wall_ms"]} ms '
        f'(busy {host["main_thread_busy_fraction"]}), trainer {host["process_cpu_ms"]} ms CPU, '
        f'{host["involuntary_switches"]} involuntary switches, gc {gc_counts} ({host["gc_ms"]} ms); '
        f'iterations {spread["min"]}-{spread["median"]}-{spread["max"]} ms (min-median-max)'
    )

"""Benchmark the training step (and data loading) of the project's Sa2VA model; see docs/PERFORMANCE.md.

    python tools/benchmark.py --preset sa2va-internvl3-2b --batch-size 32 --image-size 512x512 \
        [--extra-batch-sizes 1,8] [--no-ladder] [--no-official] [--deepspeed] --out report.json
    python tools/benchmark.py --device cpu --preset tiny      # CI: tiny shapes on CPU, < 60 s
    python tools/benchmark.py --dataload-only --dataload-workers 0,2,8
    python tools/benchmark.py --end-to-end --preset sa2va-internvl3-2b --batch-size 8 \
        [--config configs/vessel_lora.py] [--deepspeed none] [--cfg-options k=v ...]
        # tools/train.py's own path (runner, DeepSpeed, dataset + workers, hooks), timed, beside the
        # model step of the plain composition and the `fast` switches at the same batch size

Random weights at the preset's published shape (no downloads), synthetic batches. Prints a table
and writes the full report (JSON) to --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without install

from mmengine.config import DictAction  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(',') if x.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--preset', default='sa2va-internvl3-2b')
    ap.add_argument('--device', default='cuda')
    ap.add_argument('--batch-size', type=int, default=None, help='default 32 on GPU, 2 on CPU')
    ap.add_argument(
        '--image-size', default='512x512', help='HxW of the synthetic images (999x960 -> 9 tiles + thumbnail)'
    )
    ap.add_argument('--warmup', type=int, default=None, help='default 3 (1 on CPU)')
    ap.add_argument('--steps', type=int, default=None, help='default 8 (2 on CPU)')
    ap.add_argument('--extra-batch-sizes', type=_ints, default=[], help='also time plain + fastest at these')
    ap.add_argument(
        '--ladder',
        action=argparse.BooleanOptionalAction,
        default=None,
        help='time the levers one at a time (default on GPU); --no-ladder: plain and the fastest only',
    )
    ap.add_argument('--no-official', action='store_true', help='skip reference (a)')
    ap.add_argument('--no-fast', action='store_true', help='with --no-ladder: only the references')
    ap.add_argument(
        '--frozen-cache',
        action='store_true',
        help='with --no-ladder: the fast configuration with the '
        'frozen-feature cache warm (epoch >= 2 of an unaugmented data set)',
    )
    ap.add_argument('--no-compile', action='store_true')
    ap.add_argument('--deepspeed', action='store_true', help='also time the fastest configuration under ZeRO-2')
    ap.add_argument('--dataload', action='store_true', help='also time VesselSegDataset + collate on CPU')
    ap.add_argument('--dataload-only', action='store_true')
    ap.add_argument('--dataload-workers', type=_ints, default=[0, 2])
    ap.add_argument('--dataload-sizes', type=_ints, default=[512, 1000])
    ap.add_argument('--dataload-n', type=int, default=64)
    ap.add_argument(
        '--dataload-augment',
        action='store_true',
        help='with the train transform of --config (default configs/vessel_lora.py)',
    )
    ap.add_argument(
        '--end-to-end',
        action='store_true',
        help="time tools/train.py's path with --config (see benchmark/end_to_end.py)",
    )
    ap.add_argument('--config', type=Path, default=None, help='with --end-to-end: default configs/vessel_lora.py')
    ap.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        metavar='KEY=VALUE',
        help='with --end-to-end: config overrides, as tools/train.py takes them',
    )
    ap.add_argument(
        '--workers', type=int, default=None, help="with --end-to-end: loader workers (default: the config's)"
    )
    ap.add_argument('--e2e-deepspeed', default=None, help="with --end-to-end: e.g. none (default: the config's)")
    ap.add_argument('--e2e-steps', default='5,10,4', help='with --end-to-end: warm-up, timed, split iterations')
    ap.add_argument(
        '--memory-cap-gib',
        type=float,
        default=None,
        help='with --end-to-end: cap the process (torch.cuda.set_per_process_memory_fraction)',
    )
    ap.add_argument('--no-model-step', action='store_true', help='with --end-to-end: skip the model-step references')
    ap.add_argument(
        '--model-step-order',
        choices=('after', 'before'),
        default='after',
        help="with --end-to-end: time the model-step references after the user's run (default: the run "
        'starts in a fresh process, as tools/train.py does) or before it',
    )
    ap.add_argument(
        '--tokenizer',
        type=Path,
        default=None,
        help='tokenizer folder for a real-vocabulary preset, any family (its vocab.json + '
        "merges.txt; the preset's added tokens are added when the folder has another "
        "family's); default: ../shared/fixtures/sa2va_internvl3_8b_layout when present; "
        'tiny presets use their own',
    )
    ap.add_argument('--work-dir', type=Path, default=Path('work_dirs/bench_e2e'))
    ap.add_argument('--label', default=None)
    ap.add_argument(
        '--profile',
        nargs='?',
        const='split',
        default=None,
        choices=('split', 'throughput'),
        help='with --end-to-end: torch.profiler tables and a trace of one window: the synced split '
        '(default), or the unsynchronised throughput window, where the host runs ahead as in a real '
        'run (that run\'s samples/s is then the profiler\'s, marked "profiled")',
    )
    ap.add_argument(
        '--sync-audit',
        action='store_true',
        help='with --end-to-end: list the synchronising CUDA calls of one steady warm-up iteration, per call site',
    )
    ap.add_argument(
        '--stacks',
        action='store_true',
        help="with --end-to-end: on a fatal signal (a timeout's SIGABRT, a segfault) write this process's "
        "Python stacks to OUT.stacks.txt (needs --out), apart from the loader workers' dumps on stderr. "
        'Only then: periodic dumps (faulthandler.dump_traceback_later) crashed the process while dynamo '
        'compiled (call 43)',
    )
    ap.add_argument('--out', type=Path, default=None)
    args = ap.parse_args(argv)
    if args.stacks and args.out is None:
        ap.error('--stacks writes beside --out: give --out')

    if args.end_to_end:
        return end_to_end_main(args, ap)

    report: dict = {}
    if not args.dataload_only:
        import torch

        from projects.sa2va_vessel.benchmark.core import format_table, run_benchmark

        cuda = args.device.startswith('cuda')
        if cuda and not torch.cuda.is_available():
            ap.error('no CUDA device; use --device cpu --preset tiny')
        h, w = (int(x) for x in args.image_size.lower().split('x'))
        report = run_benchmark(
            args.preset,
            args.device,
            batch_size=args.batch_size or (32 if cuda else 2),
            image_hw=(h, w),
            warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
            steps=args.steps or (8 if cuda else 1),
            extra_batch_sizes=args.extra_batch_sizes,
            ladder=args.ladder if args.ladder is not None else cuda,
            official=not args.no_official,
            fast=not args.no_fast,
            frozen_cache=args.frozen_cache,
            deepspeed=args.deepspeed,
            compile_ok=cuda and not args.no_compile,
        )
    if args.dataload or args.dataload_only:
        from projects.sa2va_vessel.benchmark.dataload import run_dataload

        transform = None
        if args.dataload_augment:  # the train transform of the config, as tools/train.py builds it
            from mmengine.config import Config

            from projects.sa2va_vessel.benchmark.end_to_end import DEFAULT_CONFIG

            config = Config.fromfile(str(args.config or DEFAULT_CONFIG))
            transform = config.train_dataloader.dataset.get('transform')
            if transform is None:
                ap.error(f'--dataload-augment: {args.config or DEFAULT_CONFIG} has no train transform')
            transform = transform.to_dict() if hasattr(transform, 'to_dict') else dict(transform)
        report['dataload'] = run_dataload(
            sizes=args.dataload_sizes,
            workers=args.dataload_workers,
            n=args.dataload_n,
            batch_size=args.batch_size or 8,
            transform=transform,
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
    if 'results' in report:
        print(format_table(report))
    return 0


def _stacks_on_fatal_signal(path: Path) -> None:
    import faulthandler

    path.parent.mkdir(parents=True, exist_ok=True)
    stacks = path.open('w')  # open for the life of the process: faulthandler writes to its descriptor
    faulthandler.enable(file=stacks, all_threads=True)
    print(f'stacks on a fatal signal: {path}')


def config_extra_switches(config: str | Path, cfg_options: dict) -> dict:
    """The speed switches the end-to-end config turns on beyond the model step's `fast` set (with
    its --cfg-options), so the `fast` row times what the run turns on."""
    from mmengine.config import Config

    from projects.sa2va_vessel.benchmark.core import EXTRA_FAST_SWITCHES

    cfg = Config.fromfile(str(config))
    cfg.merge_from_dict(dict(cfg_options))
    return {name: True for name in EXTRA_FAST_SWITCHES if cfg.model.get(name, False)}


def end_to_end_main(args: argparse.Namespace, ap: argparse.ArgumentParser) -> int:
    import torch

    from projects.sa2va_vessel.benchmark.end_to_end import DEFAULT_CONFIG, run_end_to_end

    cuda = args.device.startswith('cuda')
    if cuda and not torch.cuda.is_available():
        ap.error('no CUDA device; use --device cpu --preset tiny')
    from projects.sa2va_vessel.models.presets import TINY_PRESET

    tiny = args.preset in TINY_PRESET.values()
    tokenizer = args.tokenizer
    # the Qwen2.5 BPE (vocab.json + merges.txt) serves every family: the preset's added tokens are
    # laid on top when the folder's own are another family's (models/random_checkpoint.write_tokenizer)
    shared = Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'sa2va_internvl3_8b_layout'
    if tokenizer is not None and tiny:
        ap.error(f'preset {args.preset} is tiny: it uses its own small tokenizer, leave --tokenizer out')
    if tokenizer is None and not tiny and shared.is_dir():
        tokenizer = shared
    if tokenizer is None and not tiny:
        ap.error(
            f'preset {args.preset} uses the real vocabulary: pass --tokenizer DIR (vocab.json + merges.txt '
            'of any Sa2VA checkpoint)'
        )
    if args.stacks:
        _stacks_on_fatal_signal(args.out.with_suffix('.stacks.txt'))
    warmup, steps, split = _ints(args.e2e_steps)
    options = dict(args.cfg_options or {})
    batch = args.batch_size
    report: dict = {'mode': 'end_to_end', 'preset': args.preset, 'device': args.device}

    references = not args.no_model_step

    def model_step_references() -> None:
        from projects.sa2va_vessel.benchmark.core import format_table, run_benchmark

        step = run_benchmark(
            args.preset,
            args.device,
            batch_size=batch or 8,
            ladder=False,
            official=False,
            fast=True,
            compile_ok=cuda and not args.no_compile,
            warmup=3 if cuda else 1,
            steps=8 if cuda else 1,
            fast_switches=config_extra_switches(args.config or DEFAULT_CONFIG, options),
        )
        report['model_step'] = step
        print(format_table(step))

    def between_the_two() -> None:
        # The second side starts with dynamo's caches empty, as a fresh process would: the first
        # side's compiled graphs are not checked (nor counted against dynamo's recompile limit) at
        # every call, and its models and loader workers are freed before the second builds its own.
        torch.compiler.reset()
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()

    # After, by default: in call 49 the run timed after the model step in one process took 233 ms per
    # b8 iteration; in call 51 the same run as the first thing in its process took 159 ms.
    if references and args.model_step_order == 'before':
        model_step_references()
        between_the_two()
    h, w = (int(x) for x in args.image_size.lower().split('x'))
    if h != w:
        ap.error('--end-to-end writes square synthetic images: give --image-size NxN')
    e2e = run_end_to_end(
        args.preset,
        args.device,
        config=args.config or DEFAULT_CONFIG,
        work_dir=args.work_dir,
        image_size=h,
        n_val=2 if not cuda else 4,
        n_train=64 if not cuda else 256,
        batch_size=batch,
        num_workers=args.workers,
        warmup=warmup,
        steps=steps,
        split_steps=split,
        tokenizer_from=tokenizer,
        deepspeed=args.e2e_deepspeed,
        cfg_options=options,
        memory_cap_gib=args.memory_cap_gib,
        label=args.label or 'e2e',
        profile=args.profile,
        sync_audit=args.sync_audit,
    )
    report['end_to_end'] = e2e
    if references and args.model_step_order == 'after':
        between_the_two()
        model_step_references()
    if 'model_step' in report:
        by_name = {r['name']: r for r in report['model_step']['results']}
        for name in ('plain', 'fast'):
            if name in by_name and e2e['samples_per_s']:
                e2e[f'x_{name}_model_step'] = round(e2e['samples_per_s'] / by_name[name]['samples_per_s'], 3)
        print(
            f'end-to-end / model step: x plain {e2e.get("x_plain_model_step")}, x fast {e2e.get("x_fast_model_step")}'
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

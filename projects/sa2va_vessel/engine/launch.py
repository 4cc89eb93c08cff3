"""Command line of ``tools/train.py``: parse, load the config, apply overrides, train.

Exit status: 0 done; :data:`~.preemption.PREEMPTED_EXIT_CODE` (75) stopped by SIGUSR1/SIGTERM
after saving a checkpoint (``slurm/train.sbatch`` requeues the job; run again with
``--resume`` to continue); 2 the launch check refused the run (the message says what to do).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from mmengine.config import Config, DictAction

# The runner's modules (torch, DeepSpeed) are imported after the arguments are parsed, so that
# --help answers at once.


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train Sa2VA for vessel segmentation.')
    parser.add_argument('config', help='config file (python)')
    parser.add_argument('--work-dir', help='where logs and checkpoints go (default: work_dirs/<config name>)')
    parser.add_argument(
        '--deepspeed',
        help='deepspeed_zero2 (a json under configs/deepspeed/), '
        "a path to a json, or none for the plain runner; sets the config's "
        '"deepspeed" key and the optim_wrapper.type that goes with it '
        "(default: the config's)",
    )
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='PATH',
        help='resume from PATH, or (no PATH, or "auto") from the latest '
        'complete checkpoint in the work dir; starts from scratch when there is '
        'none, so job scripts can always pass it',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        metavar='KEY=VALUE',
        help='override config entries, e.g. train_dataloader.batch_size=8',
    )
    parser.add_argument(
        '--max-iters',
        type=int,
        help="run N iterations: sets train_cfg.max_iters and stretches the config's "
        'param_scheduler (warm-up share, cosine) to end at N',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='how the processes were started: pytorch = torchrun '
        '(tools/dist_train.sh), slurm = one srun task per GPU '
        '(slurm/train.sbatch)',
    )
    return parser.parse_args(argv)


def load_config(args: argparse.Namespace) -> Config:
    """The config with the command line applied (command line wins over the file)."""
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.max_iters is not None:
        set_run_length(cfg, args.max_iters)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = os.path.join('work_dirs', Path(args.config).stem)
    if args.deepspeed is not None:
        from .runner import runner_options

        cfg.merge_from_dict(
            runner_options(args.deepspeed, cfg.get('mixed_precision', None), cfg.get('master_weights', False))
        )
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    cfg.launcher = args.launcher
    return cfg


def set_run_length(cfg: Config, max_iters: int) -> None:
    """``train_cfg.max_iters = max_iters`` with the config's iteration-based schedule stretched to
    end there (the runner refuses a schedule that ends elsewhere)."""
    from .schedule import stretch_schedule

    if max_iters < 1:
        raise SystemExit(f'--max-iters {max_iters}: a run needs at least one iteration')
    cfg.train_cfg.max_iters = max_iters
    schedule = cfg.get('param_scheduler')
    if schedule:
        schedule = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule]
        cfg.param_scheduler = stretch_schedule([dict(entry) for entry in schedule], max_iters) or None
    print(f'--max-iters {max_iters}: param_scheduler = {cfg.param_scheduler}', flush=True)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    from .launch_check import LaunchError
    from .preemption import PREEMPTED_EXIT_CODE
    from .runner import train

    cfg = load_config(args)
    try:
        runner = train(cfg)
    except LaunchError as exc:
        print(f'ERROR: {exc}', file=sys.stderr, flush=True)
        sys.exit(2)
    if getattr(runner, 'preempted', False):
        sys.exit(PREEMPTED_EXIT_CODE)

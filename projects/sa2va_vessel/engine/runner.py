"""Build the mmengine runner for a config: DeepSpeed ZeRO-2 or the plain runner.

The runner runs what the config says. A config that asks for what this project does differently
is refused with the key to write (:func:`check_config`), not rewritten:

* ``default_scope = 'sa2va_vessel'`` (the project's registries, ``registry.py``);
* ``train_cfg.type = 'ResumableIterBasedTrainLoop'`` (preemption, exact resume), not
  mmengine's ``IterBasedTrainLoop``;
* ``default_hooks.checkpoint.max_keep_ckpts = -1`` with ``checkpoint_keep_last = N``: the runner
  deletes an old checkpoint only after a newer one is complete (mmengine's hook deletes first);
* ``param_scheduler`` written out, ending at ``train_cfg.max_iters`` (the ``_base_`` schedule is
  :func:`warmup_cosine_schedule` of its ``max_iters``; a config that changes ``max_iters`` writes
  its own, and the error prints it);
* ``optim_wrapper.type`` the one the runner trains with (:func:`optim_wrapper_for`):
  ``DeepSpeedOptimWrapper`` under DeepSpeed, ``AmpOptimWrapper`` (``dtype='float16'``) for the
  plain runner in fp16 on a GPU, ``MasterWeightOptimWrapper`` in bf16 with ``master_weights = True``,
  ``SyncFreeOptimWrapper`` otherwise.

Config keys read here besides mmengine's:

* ``deepspeed``: ``'deepspeed_zero2'`` (a json under ``configs/deepspeed/``), a path to a json,
  or ``'none'`` for the plain ``Runner``. Under DeepSpeed, ``optim_wrapper.clip_grad`` and
  ``accumulative_counts`` fill the json's ``"auto"`` entries.
* ``deepspeed_one_process`` (optional): the runner for a run of one process, e.g. ``'none'``
  (:func:`apply_one_process_runner`; ``tools/train.py --deepspeed`` clears it).
* ``mixed_precision``: ``'bf16'``, ``'fp16'`` or ``None``. Used on GPU only; CPU runs fp32.
* ``master_weights`` (optional, default False): the plain runner in bf16 runs the trainables in
  bf16 and updates fp32 masters of them (``engine/master_weights.py``); one process only.
* ``global_batch_size = N`` (optional): ``optim_wrapper.accumulative_counts`` becomes
  ``N / (train_dataloader.batch_size * WORLD_SIZE)``, so one config keeps its global batch on any
  number of GPUs (the official recipe's 256 = 2 x 16 x 8); it must divide evenly (logged).
* ``checkpoint_keep_last``: how many ``iter_<n>.pth`` the runner keeps (-1: all).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any, Iterator, Union

import torch
import torch.distributed as dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.runner import FlexibleRunner, IterBasedTrainLoop, Runner
from mmengine.runner.checkpoint import CheckpointLoader

from ..models.quantize import INSTALL_HINT as BITSANDBYTES_INSTALL_HINT
from ..registry import DATA_MODULES, FUNCTIONS, OPTIMIZERS, SCOPE
from . import deepspeed_sync_free
from .atomic_checkpoint import ResumableRunnerMixin, find_latest_checkpoint, remove_partials
from .launch_check import WorkDirLock, check_launch_environment, env_rank, slurm_to_torch_env
from .loader_workers import FaultStacksLoadersMixin, prepare_loader_workers, shut_down_loader_workers
from .preemption import preemption_signals
from .schedule import iteration_schedule_ends, schedule_options, stretch_schedule, warmup_cosine_schedule

REPO_ROOT = Path(__file__).resolve().parents[3]
DEEPSPEED_CONFIG_DIR = REPO_ROOT / 'configs' / 'deepspeed'
PLAIN = 'none'
RESUMABLE_LOOP = 'ResumableIterBasedTrainLoop'


class ResumableRunner(ResumableRunnerMixin, FaultStacksLoadersMixin, Runner):
    """mmengine's ``Runner`` with atomic checkpoints, RNG/data position, retention
    (see :mod:`.atomic_checkpoint`); its loaders' workers print Python stacks on a fatal signal."""


class ResumableFlexibleRunner(ResumableRunnerMixin, FaultStacksLoadersMixin, FlexibleRunner):
    """mmengine's ``FlexibleRunner`` (DeepSpeed) with the same additions."""


AnyRunner = Union[ResumableRunner, ResumableFlexibleRunner]


# -- DeepSpeed config -------------------------------------------------------------------------
def deepspeed_config_path(name: str) -> Path:
    """Map ``deepspeed_zero2`` to ``configs/deepspeed/deepspeed_zero2.json``; keep real paths."""
    path = Path(name)
    if path.suffix == '.json':
        if not path.is_file():
            raise FileNotFoundError(f'DeepSpeed config {path} does not exist')
        return path
    path = DEEPSPEED_CONFIG_DIR / f'{name}.json'
    if not path.is_file():
        known = sorted(p.stem for p in DEEPSPEED_CONFIG_DIR.glob('*.json'))
        raise FileNotFoundError(f'unknown DeepSpeed config {name!r}; known: {known + [PLAIN]}')
    return path


def resolve_deepspeed_config(ds_config: dict, cfg: Config, on_gpu: bool, world_size: int = 1) -> dict:
    """Fill the ``"auto"`` entries of a DeepSpeed json from the mmengine config.

    Batch sizes come from ``train_dataloader.batch_size`` and
    ``optim_wrapper.accumulative_counts``; ``train_batch_size`` is left to DeepSpeed, which
    knows the world size. bf16/fp16 follow ``cfg.mixed_precision`` on GPU and are forced off
    on CPU, where DeepSpeed's CPU path trains in fp32. ``zero_optimization.overlap_comm`` "auto" is
    on with several ranks only (``world_size``).
    """
    ds = copy.deepcopy(ds_config)
    optim = cfg.get('optim_wrapper', {})
    micro = cfg.train_dataloader.batch_size
    accum = int(optim.get('accumulative_counts', 1))
    clip = (optim.get('clip_grad') or {}).get('max_norm', 0.0)
    for key, value in (
        ('train_micro_batch_size_per_gpu', micro),
        ('gradient_accumulation_steps', accum),
        ('gradient_clipping', clip),
    ):
        if ds.get(key, 'auto') == 'auto':
            ds[key] = value
    if ds.get('train_batch_size') == 'auto':
        del ds['train_batch_size']  # DeepSpeed computes micro * accumulation * world size

    precision = cfg.get('mixed_precision', None)
    for kind in ('bf16', 'fp16'):
        section = ds.setdefault(kind, {})
        wanted = on_gpu and precision == kind
        if section.get('enabled', 'auto') == 'auto':
            section['enabled'] = wanted
        elif section['enabled'] and not on_gpu:
            print_log(
                f'DeepSpeed config enables {kind}, but there is no GPU: training in fp32.',
                logger='current',
                level=logging.WARNING,
            )
            section['enabled'] = False

    # DeepSpeed's bf16 overflow check scans every gradient with ~6 small kernels and a host sync
    # before each step (150 ms/step of launches at 2B, docs/bench/call17). The gradient-flow
    # guard already stops the run on a non-finite gradient, so "auto" keeps the scan only when
    # the guard is off.
    bf16 = ds['bf16']
    if bf16.get('check_grad_overflow') == 'auto':
        bf16['check_grad_overflow'] = not guard_checks_gradients(cfg)

    # overlap_comm runs the gradient reduction on a side stream, and ends every backward with a
    # device-wide synchronisation (ZeRO-2's independent_gradient_partition_epilogue) and keeps a
    # second bucket buffer. On one rank there is no reduction to overlap: only the stall is left.
    zero = ds.get('zero_optimization') or {}
    if zero.get('overlap_comm') == 'auto':
        zero['overlap_comm'] = world_size > 1

    left = [k for k, v in _walk(ds) if v == 'auto']
    if left:
        raise ValueError(
            f'DeepSpeed config still has "auto" values the runner cannot fill: {left}. Set them in the json.'
        )
    return ds


def guard_checks_gradients(cfg: Config) -> bool:
    """Whether the config's GradientFlowGuardHook checks every step's gradients for inf/NaN."""
    hooks = list((cfg.get('default_hooks') or {}).values()) + list(cfg.get('custom_hooks') or [])
    return any(isinstance(h, dict) and h.get('type') == 'GradientFlowGuardHook' and h.get('check', True) for h in hooks)


def _walk(tree: dict, prefix: str = '') -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _walk(value, f'{prefix}{key}.')
        else:
            yield f'{prefix}{key}', value


# -- distributed ------------------------------------------------------------------------------
def free_port() -> int:
    """A TCP port that was free a moment ago (for a single-process rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def init_distributed(launcher: str, use_deepspeed: bool) -> None:
    """Start the process group ourselves where mmengine's own start does not fit.

    * CPU with ``--launcher pytorch``: mmengine's pytorch launcher calls
      ``torch.cuda.set_device``, which fails without CUDA. We start gloo first; mmengine
      then sees an initialised group and skips its own start.
    * DeepSpeed with ``--launcher none``: ``deepspeed.initialize`` needs a process group even
      for one process, so we make a world of one on a free local port.
    On GPU with a launcher, mmengine starts NCCL itself (it sets the device correctly there).
    """
    if dist.is_available() and dist.is_initialized():
        return
    if launcher == 'none' and use_deepspeed:
        os.environ.update(
            RANK='0',
            LOCAL_RANK='0',
            WORLD_SIZE='1',
            MASTER_ADDR=os.environ.get('MASTER_ADDR', '127.0.0.1'),
            MASTER_PORT=os.environ.get('MASTER_PORT', str(free_port())),
        )
    elif launcher != 'pytorch' or torch.cuda.is_available():
        return
    backend = 'nccl' if torch.cuda.is_available() else 'gloo'
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)))
    if use_deepspeed:
        import deepspeed

        deepspeed.init_distributed(dist_backend=backend)
    else:
        dist.init_process_group(backend=backend)


def destroy_distributed() -> None:
    """Tear the process group down (avoids the NCCL/gloo 'not destroyed' warning at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# -- checkpoint loading -----------------------------------------------------------------------
@contextlib.contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Let mmengine unpickle local checkpoints fully while training runs.

    Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``; mmengine 0.10 calls it
    without the argument, and its checkpoints hold message-hub ``HistoryBuffer``s, numpy
    scalars and optimizer state, which the weights-only unpickler refuses, so ``--resume``
    fails. The checkpoints the runner resumes from are the ones it wrote itself into the work
    dir (or one the user names on the command line), so full unpickling is acceptable there.
    The swap of mmengine's local loader is scoped to this context and undone on exit; other
    ``torch.load`` calls keep torch's safe default. DeepSpeed passes ``weights_only=False``
    itself and needs nothing.
    """
    schemes = CheckpointLoader._schemes
    original = schemes['']

    def load_from_trusted_local(filename: str, map_location: Any) -> Any:
        filename = os.path.expanduser(filename)
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'{filename} can not be found.')
        return torch.load(filename, map_location=map_location, weights_only=False)

    schemes[''] = load_from_trusted_local
    try:
        yield
    finally:
        schemes[''] = original


# -- runner -----------------------------------------------------------------------------------
def check_selection_split(cfg: Config) -> None:
    """Refuse a config that validates on a test split: the best checkpoint and the threshold
    are chosen on validation, so a test split there would select on test images."""
    from ..datasets.splits import split_role

    dataset = (cfg.get('val_dataloader') or {}).get('dataset') or {}
    split = dataset.get('split') if isinstance(dataset, dict) else None
    role = split_role(split) if isinstance(split, str) else None
    if role is not None and role[1] == 'test':
        raise ValueError(
            f'val_dataloader.dataset.split is {split!r}: validation chooses the best '
            'checkpoint and threshold and must not read test images; use the val '
            'split (tools/prepare_dataset.py writes one from the training part) and '
            'evaluate test with tools/test.py --split test'
        )


class ConfigError(ValueError):
    """A config asks for something the runner would have to change to run it (names the key)."""


def optim_wrapper_for(deepspeed: str | None, mixed_precision: str | None, master_weights: bool = False) -> dict:
    """The ``optim_wrapper`` type (and dtype) the runner trains with for this runner and precision.

    DeepSpeed's engine owns the step (``DeepSpeedOptimWrapper``). The plain runner in fp16 scales
    the loss (``AmpOptimWrapper``, GPU only); in bf16 it needs no scaler (torch's GradScaler cannot
    unscale bf16 gradients). In bf16 with ``master_weights`` the trainables run in bf16 and AdamW
    updates fp32 masters of them (``MasterWeightOptimWrapper``, ``engine/master_weights.py``: no
    autocast in the forward, 4 bytes per trainable more). Otherwise (fp32, or bf16 with fp32
    trainables under the model's autocast) ``SyncFreeOptimWrapper`` (mmengine's ``OptimWrapper``
    without its per-step device sync, ``engine/optim_wrapper.py``).
    """
    if (deepspeed or PLAIN) != PLAIN:
        return dict(type='DeepSpeedOptimWrapper')
    if mixed_precision == 'fp16':
        return dict(type='AmpOptimWrapper', dtype='float16')
    if mixed_precision == 'bf16' and master_weights:
        return dict(type='MasterWeightOptimWrapper')
    return dict(type='SyncFreeOptimWrapper')


def runner_options(deepspeed: str, mixed_precision: str | None, master_weights: bool = False) -> dict:
    """Config options that switch a config to the runner ``deepspeed`` (``tools/train.py
    --deepspeed``): the ``deepspeed`` key and the optimizer wrapper that goes with it. The choice
    is then the same on any number of processes (``deepspeed_one_process`` is cleared)."""
    wrapper = optim_wrapper_for(deepspeed, mixed_precision, master_weights)
    return {
        'deepspeed': deepspeed,
        'deepspeed_one_process': None,
        **{f'optim_wrapper.{k}': v for k, v in wrapper.items()},
    }


def launch_world_size(launcher: str) -> int:
    """How many processes train: 1 with ``--launcher none``, else the launcher's ``WORLD_SIZE``."""
    return 1 if launcher == 'none' else int(os.environ.get('WORLD_SIZE', 1))


def apply_one_process_runner(cfg: Config, world_size: int) -> bool:
    """With ``cfg.deepspeed_one_process`` set and one process, train with that runner instead.

    ZeRO partitions the optimizer state and gradients over processes; with one process nothing is
    partitioned, and ZeRO-2 still runs a Python hook per trainable tensor in the backward and
    copies every gradient twice (into its bucket, then into the fp32 partition). So a config can
    name the runner for one process (``deepspeed_one_process = 'none'``: the plain runner, fp32
    trainables over the bf16 base). The switch sets ``deepspeed`` and the optimizer wrapper that
    goes with it (:func:`runner_options`) and is logged. Returns True when it switched.
    """
    one = cfg.get('deepspeed_one_process')
    mode = cfg.get('deepspeed', PLAIN) or PLAIN
    if one is None or world_size != 1 or one == mode:
        return False
    cfg.merge_from_dict(runner_options(one, cfg.get('mixed_precision', None), cfg.get('master_weights', False)))
    print_log(
        f'one process: deepspeed_one_process={one!r} replaces deepspeed={mode!r} (ZeRO has nothing to '
        f'partition over one process); optim_wrapper.type={cfg.optim_wrapper.type!r}. Set '
        "deepspeed_one_process=None, or pass --deepspeed, to keep the config's runner.",
        logger='current',
    )
    return True


def unknown_optimizer_message(name: str, bitsandbytes_installed: bool) -> str:
    """Why ``optim_wrapper.optimizer.type=name`` names no registered optimizer, and what to do."""
    message = f'optim_wrapper.optimizer.type={name!r} is no registered optimizer'
    if not bitsandbytes_installed and ('8bit' in name or 'Paged' in name or name.startswith('bnb_')):
        return (
            f"{message}: it is one of bitsandbytes' optimizers, which mmengine registers only when "
            f'bitsandbytes is installed, and it is not: {BITSANDBYTES_INSTALL_HINT}; or write '
            "optim_wrapper.optimizer.type='AdamW' (8 bytes of optimizer state per trainable parameter "
            'instead of 2)'
        )
    known = sorted(set(OPTIMIZERS.module_dict) | set(OPTIMIZERS.parent.module_dict))
    return f'{message}; registered: {", ".join(known)}'


def check_config(cfg: Config, on_gpu: bool) -> None:
    """Raise :class:`ConfigError` where the config asks for something the runner would have to
    rewrite to run it; the message names the key and what to write (module docstring)."""
    scope = cfg.get('default_scope')
    if scope != SCOPE:
        raise ConfigError(
            f"default_scope is {scope!r}: the project's classes are in the {SCOPE!r} "
            f"registries (mmengine's are found through them); write "
            f'default_scope = {SCOPE!r} (configs/_base_/default_runtime.py does)'
        )

    FUNCTIONS.import_from_location()
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        collate = ((cfg.get(loader) or {}).get('collate_fn') or {}).get('type')
        # mmengine's runner looks collate functions up on its root registry, blind to the scope
        if isinstance(collate, str) and collate in FUNCTIONS.module_dict:
            raise ConfigError(
                f"{loader}.collate_fn.type={collate!r} is the project's, which mmengine's "
                f'runner finds by its scope only: write {loader}.collate_fn.type='
                f"'{SCOPE}.{collate}'"
            )

    train_cfg = cfg.get('train_cfg') or {}
    loop = train_cfg.get('type', 'IterBasedTrainLoop' if 'max_iters' in train_cfg else None)
    if loop in ('IterBasedTrainLoop', IterBasedTrainLoop):
        raise ConfigError(
            f'train_cfg.type is {"unset" if "type" not in train_cfg else repr(loop)}: '
            f'iteration-based training runs {RESUMABLE_LOOP!r} (preemption, exact '
            f'resume, launch check; engine/resumable_loop.py); write '
            f'train_cfg = dict(type={RESUMABLE_LOOP!r}, max_iters=..., val_interval=...)'
        )

    ckpt_hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    keep = ckpt_hook.get('max_keep_ckpts', -1) if ckpt_hook is not None else -1
    if keep != -1:
        raise ConfigError(
            f"default_hooks.checkpoint.max_keep_ckpts={keep}: mmengine's CheckpointHook "
            'deletes the oldest checkpoint before it writes the next one; the runner keeps '
            'checkpoints itself and deletes one only after a newer one is complete. Write '
            f'default_hooks.checkpoint.max_keep_ckpts=-1 and checkpoint_keep_last={keep}'
        )

    max_iters = train_cfg.get('max_iters')
    lr_schedule = cfg.get('lr_schedule')
    if lr_schedule is not None:
        hint = ''
        if max_iters is not None:
            hint = f' = {warmup_cosine_schedule(int(max_iters), **lr_schedule) or None}'
        raise ConfigError(
            f'lr_schedule={dict(lr_schedule)} is not read: the schedule is written out '
            f'as param_scheduler; write param_scheduler{hint} '
            '(engine.schedule.warmup_cosine_schedule(max_iters, **lr_schedule))'
        )
    schedule = cfg.get('param_scheduler')
    ends = iteration_schedule_ends(schedule) if schedule else []
    if ends and max_iters is not None and max(ends) != int(max_iters):
        fix = (
            f'; on the command line: --max-iters {max_iters}, or --cfg-options '
            f'{" ".join(schedule_options(int(max_iters), stretch_schedule(list(schedule), int(max_iters))))}'
            if isinstance(schedule, (list, tuple))
            else ''
        )
        raise ConfigError(
            f'param_scheduler ends at iteration {max(ends)} but train_cfg.max_iters is '
            f'{max_iters}: the schedule would '
            f'{"stop early and hold its last lr" if max(ends) < int(max_iters) else "be cut off"}. '
            f'Write a param_scheduler that ends at {max_iters} (for the warm-up + cosine '
            f'of the _base_ schedule: engine.schedule.warmup_cosine_schedule({max_iters}, '
            f'warmup_ratio, warmup_start_factor, eta_min_ratio)){fix}'
        )

    optim = cfg.get('optim_wrapper') or {}
    if 'optimizer' not in optim:
        raise ConfigError('config needs optim_wrapper=dict(type=..., optimizer=dict(type="AdamW", ...))')
    optimizer_type = (optim.get('optimizer') or {}).get('type')
    if isinstance(optimizer_type, str) and OPTIMIZERS.get(optimizer_type) is None:
        # mmengine would build None and fail with "None is not a callable object"
        raise ConfigError(
            unknown_optimizer_message(optimizer_type, importlib.util.find_spec('bitsandbytes') is not None)
        )
    mode, precision = cfg.get('deepspeed', PLAIN) or PLAIN, cfg.get('mixed_precision', None)
    wanted = optim_wrapper_for(mode, precision, cfg.get('master_weights', False))
    got = {k: optim.get(k) for k in wanted}
    if got != wanted:
        settings = ', '.join(f'optim_wrapper.{k}={v!r}' for k, v in wanted.items())
        raise ConfigError(
            f'optim_wrapper has {got}, but deepspeed={mode!r} with mixed_precision='
            f'{precision!r} and master_weights={cfg.get("master_weights", False)!r} trains with '
            f'{wanted}: write {settings} '
            '(tools/train.py --deepspeed sets both keys)'
        )
    if wanted['type'] == 'AmpOptimWrapper' and not on_gpu:
        raise ConfigError(
            "optim_wrapper.type='AmpOptimWrapper' (mixed_precision='fp16') needs a GPU; "
            "on the CPU write mixed_precision=None and optim_wrapper.type='SyncFreeOptimWrapper'"
        )


def prepare_config(cfg: Config, on_gpu: bool) -> Config:
    """Check ``cfg`` (:func:`check_config`) and settle what depends on the run: ``None`` hooks
    dropped, ``--resume auto``, the frozen-feature caches under augmentation and the
    accumulation for ``global_batch_size`` (each logged). Changes ``cfg`` in place; returns it."""
    check_selection_split(cfg)
    check_config(cfg, on_gpu)
    hooks = cfg.get('default_hooks') or {}
    # mmengine asserts on None for hook names it does not know; None means "off" here too.
    cfg.default_hooks = ConfigDict({k: v for k, v in hooks.items() if v is not None})
    _resolve_auto_resume(cfg)
    disable_feature_cache_when_augmented(cfg)
    accumulate_to_global_batch(cfg)
    return cfg


def accumulate_to_global_batch(cfg: Config, world_size: int | None = None) -> int | None:
    """Set ``optim_wrapper.accumulative_counts`` from ``cfg.global_batch_size`` (None: unchanged)."""
    target = cfg.get('global_batch_size')
    if not target:
        return None
    world = int(world_size if world_size is not None else os.environ.get('WORLD_SIZE', 1))
    micro = int(cfg.train_dataloader.batch_size)
    per_step = micro * world
    if int(target) % per_step:
        raise ValueError(
            f'global_batch_size={target} is not a multiple of batch_size {micro} x world size {world} = {per_step}'
        )
    accum = int(target) // per_step
    cfg.optim_wrapper['accumulative_counts'] = accum
    print_log(
        f'global batch {target} = {micro} per GPU x {world} GPU(s) x {accum} accumulation steps', logger='current'
    )
    return accum


def train_transform_active(cfg: Config) -> bool:
    """Whether the training set has a random transform (augmentation) switched on."""
    dataset = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    transform = dataset.get('transform') if hasattr(dataset, 'get') else None
    if transform is None:
        return False
    return not (isinstance(transform, dict) and transform.get('enabled', True) is False)


def disable_feature_cache_when_augmented(cfg: Config) -> bool:
    """Switch the model's frozen-feature caches off when the training set is augmented.

    An augmented sample never reaches the frozen encoders twice unchanged, so the dataset gives
    it no ``frozen_feature_key`` and a cache would only hold memory (and validation images).
    Returns True when it switched something off (and says so in the log).
    """
    model = cfg.get('model') or {}
    size = int(model.get('sam2_feature_cache_size', 0) or 0)
    if not train_transform_active(cfg) or (size <= 0 and not model.get('vision_feature_cache')):
        return False
    print_log(
        f'frozen-feature cache off: the training set is augmented '
        f'(train_dataloader.dataset.transform), so no training sample reaches the frozen '
        f'encoders twice unchanged; sam2_feature_cache_size {size} -> 0, '
        f'vision_feature_cache -> False',
        logger='current',
    )
    model['sam2_feature_cache_size'] = 0
    model['vision_feature_cache'] = False
    return True


def checkpoint_dir(cfg: Config) -> Path:
    """Where the CheckpointHook writes: the work dir, or ``out_dir/<work dir name>``."""
    work_dir = Path(os.path.abspath(cfg.work_dir))
    out_dir = ((cfg.get('default_hooks') or {}).get('checkpoint') or {}).get('out_dir')
    return Path(out_dir) / work_dir.name if out_dir else work_dir


def _resolve_auto_resume(cfg: Config) -> None:
    """``resume=True`` without a path: the latest *complete* checkpoint, or a fresh start.

    mmengine would follow ``last_checkpoint`` blindly; here a pointer to a missing or
    half-written checkpoint is ignored and the highest complete ``iter_<n>.pth`` is taken.
    """
    if not cfg.get('resume') or cfg.get('load_from') or cfg.get('work_dir') is None:
        return
    latest = find_latest_checkpoint(checkpoint_dir(cfg))
    if latest is None:
        print_log(
            f'--resume auto: no complete checkpoint in {checkpoint_dir(cfg)}; starting from scratch.', logger='current'
        )
        cfg.resume = False
    else:
        print_log(f'--resume auto: resuming from {latest}.', logger='current')
        cfg.load_from = str(latest)


def build_runner(cfg: Config) -> AnyRunner:
    """Build the runner the config asks for (``cfg.deepspeed``), ready for ``runner.train()``.

    May start the process group first (see :func:`init_distributed`).
    """
    cfg = copy.deepcopy(cfg)
    launcher = cfg.get('launcher', 'none')
    apply_one_process_runner(cfg, launch_world_size(launcher))
    mode = cfg.get('deepspeed', PLAIN) or PLAIN
    on_gpu = torch.cuda.is_available()
    use_deepspeed = mode != PLAIN
    prepare_config(cfg, on_gpu)
    optim = dict(cfg.optim_wrapper)
    if optim.get('type') == 'MasterWeightOptimWrapper' and launch_world_size(launcher) != 1:
        raise ConfigError(
            'master_weights=True trains one process (the trainables turn bf16 after DDP has built '
            f'its fp32 gradient buckets); {launch_world_size(launcher)} processes: keep '
            "deepspeed='deepspeed_zero2', or write master_weights=False with "
            "optim_wrapper.type='SyncFreeOptimWrapper' (fp32 trainables under autocast)"
        )
    backend = 'nccl' if on_gpu else 'gloo'
    cfg.setdefault('env_cfg', ConfigDict())
    cfg.env_cfg.setdefault('dist_cfg', ConfigDict())
    cfg.env_cfg.dist_cfg.backend = backend

    init_distributed(launcher, use_deepspeed)
    prepare_loader_workers((cfg.env_cfg.get('mp_cfg') or {}).get('mp_start_method'), DATA_MODULES)

    if use_deepspeed:
        deepspeed_sync_free.install()  # its gradient-norm step without two device syncs
        path = deepspeed_config_path(mode)
        world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        ds_config = resolve_deepspeed_config(json.loads(path.read_text()), cfg, on_gpu, world_size)
        cfg.strategy = dict(type='DeepSpeedStrategy', config=ds_config, exclude_frozen_parameters=True)
        # DeepSpeedOptimWrapper takes the optimizer only: clip_grad and accumulation are in the json now.
        cfg.optim_wrapper = dict(type=optim['type'], optimizer=optim['optimizer'])
        runner = ResumableFlexibleRunner.from_cfg(cfg)
        runner.logger.info(f'DeepSpeed config ({path.name}, resolved):\n{json.dumps(ds_config, indent=2)}')
        return runner

    if on_gpu and cfg.get('mixed_precision', None) == 'bf16':
        # bf16 has fp32's exponent range: no loss scaling (SyncFreeOptimWrapper, checked above). The model
        # keeps its trainables in fp32 and runs its forward under bf16 autocast itself
        # (Sa2VAVesselModel.trainable_dtype), so AdamW's updates are not rounded away in bf16 weights.
        if cfg.model.get('trainable_dtype') != 'float32' or cfg.model.get('dtype') != 'bfloat16':
            raise ValueError(
                "the plain runner with mixed_precision='bf16' needs model.dtype='bfloat16' "
                "and model.trainable_dtype='float32' (fp32 trainables over a bf16 base); "
                f'got dtype={cfg.model.get("dtype")!r}, '
                f'trainable_dtype={cfg.model.get("trainable_dtype")!r}'
            )
    if launcher != 'none' and not on_gpu and cfg.get('model_wrapper_cfg') is None:
        # mmengine passes device_ids=[LOCAL_RANK] to DDP, which DDP refuses for CPU modules.
        cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False)
    cfg.default_hooks.setdefault('trainable_checkpoint', dict(type='TrainableCheckpointHook'))
    if optim.get('type') == 'MasterWeightOptimWrapper':
        cfg.default_hooks.setdefault('master_weights', dict(type='MasterWeightsHook'))
    return ResumableRunner.from_cfg(cfg)


def train(cfg: Config) -> AnyRunner:
    """Check the launch, build the runner, train, and always take the process group down.

    SIGUSR1/SIGTERM during training stop it after the current step with a checkpoint
    (``runner.preempted`` is then True; ``tools/train.py`` exits with
    :data:`~.preemption.PREEMPTED_EXIT_CODE`).
    """
    cfg = copy.deepcopy(cfg)
    launcher = cfg.get('launcher', 'none')
    check_launch_environment(launcher)
    if launcher == 'slurm':
        # srun started one task per GPU: map SLURM_* to torch's env:// rendezvous, then it is
        # the pytorch launcher (one code path for 1..N nodes, DDP or ZeRO-2).
        slurm_to_torch_env()
        cfg.launcher = 'pytorch'
    lock = WorkDirLock(cfg.work_dir) if cfg.get('work_dir') and env_rank(launcher) == 0 else None
    with preemption_signals():
        try:
            if lock is not None:
                lock.acquire()
                for stale in remove_partials(checkpoint_dir(cfg)):
                    print_log(
                        f'Removed {stale.name}, left by an interrupted save.', logger='current', level=logging.WARNING
                    )
            runner = build_runner(cfg)
            try:
                with trusted_local_checkpoints():
                    runner.train()
            finally:
                shut_down_loader_workers(runner)
            return runner
        finally:
            destroy_distributed()
            if lock is not None:
                lock.release()

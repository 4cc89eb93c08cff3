"""The checkpoint formats a training run and its exports leave behind: resolve, read, load.

Kinds of path (``checkpoint_kind``):

* ``'export'``: an official-layout directory (``config.json`` + safetensors + tokenizer), a base
  checkpoint or ``export_full``'s output; its tensors are read by ``models/checkpoint.py`` when a
  model is built with ``model_path=DIR``; nothing is loaded on top. Deployment settings may sit in
  its ``config.json`` under ``PROJECT_KEY`` (``read_export_settings``).
* ``'file'``: a plain-runner ``.pth`` (``iter_N.pth``, ``best_*.pth``): ``state_dict`` holds the
  trainable parameters and the buffers only (``trainable_only_state``; ``meta.trainable_only``),
  ``meta.cfg`` the config text.
* ``'deepspeed'``: a DeepSpeed directory (``iter_N.pth/`` with ``mp_rank_00_model_states.pt``, whose
  ``module`` holds the trainable weights: ``exclude_frozen_parameters``).
* ``'adapter'``: ``export_adapter``'s folder (peft ``adapter_config.json`` +
  ``adapter_model.safetensors``, ``sa2va_modules.safetensors`` under official names,
  ``export_manifest.json``).
* a work directory resolves through its ``last_checkpoint`` pointer.

Beside the best checkpoint, ``best_checkpoint.json`` (``BEST_RECORD``) records the val-chosen
threshold (``write_best_record`` / ``read_best_record``).

Loading accounts for every key: every tensor must name a tensor of the model with the same shape,
and every trainable parameter must be given; anything else is a ``CheckpointError`` naming them.
peft's parameter names are handled by ``models/peft_names.py``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from safetensors.torch import load_file
from torch import nn

from .checkpoint import CheckpointError
from .name_map import official_to_ours
from .peft_names import ADAPTER_NAME, PeftNameError, from_peft_key

logger = logging.getLogger(__name__)

CONFIG_FILE = 'config.json'
DEEPSPEED_MODEL_STATES = 'mp_rank_00_model_states.pt'
#: The runner's pointer to the newest complete checkpoint of a work directory.
LAST_CHECKPOINT = 'last_checkpoint'
BEST_RECORD = 'best_checkpoint.json'
ADAPTER_CONFIG = 'adapter_config.json'
ADAPTER_WEIGHTS = 'adapter_model.safetensors'
MODULES_WEIGHTS = 'sa2va_modules.safetensors'
MANIFEST = 'export_manifest.json'
#: config.json key of this project's deployment settings (the official code ignores unknown keys)
PROJECT_KEY = 'sa2va_vessel'
SA2VA_PREFIX = 'sa2va.'
KINDS = ('export', 'adapter', 'deepspeed', 'file')


# ---- what a path holds --------------------------------------------------------------------------
def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A training checkpoint file or DeepSpeed directory; a work dir resolves via ``last_checkpoint``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f'{path}: no such checkpoint (a .pth file written by the runner, a DeepSpeed '
            f'checkpoint directory holding {DEEPSPEED_MODEL_STATES}, or a work dir with '
            f'{LAST_CHECKPOINT})'
        )
    if path.is_dir() and not (path / DEEPSPEED_MODEL_STATES).is_file():
        last = path / LAST_CHECKPOINT
        if last.is_file():
            target = Path(last.read_text().strip())
            target = target if target.is_absolute() else path / target
            return resolve_checkpoint(target if target.exists() else path / target.name)
        raise CheckpointError(
            f'{path}: a directory without {DEEPSPEED_MODEL_STATES} or {LAST_CHECKPOINT}; not a training checkpoint'
        )
    return path


def checkpoint_kind(path: str | os.PathLike) -> str:
    """One of ``KINDS`` (see module docstring); a work dir resolves through ``last_checkpoint``."""
    p = Path(path)
    if p.is_dir() and (p / CONFIG_FILE).is_file():
        return 'export'
    if p.is_dir() and ((p / ADAPTER_CONFIG).is_file() or (p / MANIFEST).is_file()):
        return 'adapter'
    return 'deepspeed' if resolve_checkpoint(p).is_dir() else 'file'


# ---- training checkpoints (.pth / DeepSpeed) ----------------------------------------------------
def read_training_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, meta) of a plain-runner ``.pth`` or a DeepSpeed checkpoint directory."""
    path = resolve_checkpoint(path)
    file = path / DEEPSPEED_MODEL_STATES if path.is_dir() else path
    try:
        ckpt = torch.load(file, map_location='cpu', weights_only=False)
    except Exception as err:  # pickle / zip errors
        raise CheckpointError(f'{file}: cannot be read as a torch checkpoint ({type(err).__name__}: {err})') from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{file}: holds a {type(ckpt).__name__}, not a checkpoint dict')
    if 'module' in ckpt and isinstance(ckpt['module'], dict):  # DeepSpeed engine state
        state = ckpt['module']
    elif 'state_dict' in ckpt:  # mmengine Runner
        state = ckpt['state_dict']
    else:
        state = ckpt  # a bare state dict
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{file}: no model state dict found (keys: {sorted(ckpt)[:10]})')
    if all(k.startswith('module.') for k in state):  # saved from a DDP wrapper
        state = {k[len('module.') :]: v for k, v in state.items()}
    return dict(state), dict(ckpt.get('meta') or {})


def config_from_checkpoint(path: str | os.PathLike) -> Any:
    """The mmengine config saved in a training checkpoint's meta (``cfg``), or None."""
    from mmengine.config import Config

    try:
        if checkpoint_kind(path) not in ('file', 'deepspeed'):
            return None
        _, meta = read_training_state(path)
    except Exception:  # not a training checkpoint (or unreadable): no saved config
        return None
    text = meta.get('cfg')
    if not text:
        return None
    return Config.fromstring(text, file_format='.py')


def trainable_only_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> OrderedDict:
    """``state_dict`` without the frozen parameters (buffers kept, as DeepSpeed's
    ``exclude_frozen_parameters`` does): what a plain-runner checkpoint holds."""
    frozen = {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}
    return OrderedDict((k, v) for k, v in state_dict.items() if k not in frozen)


def fill_frozen_from_model(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str = 'checkpoint') -> None:
    """Complete a trainable-only ``state_dict`` in place with the model's frozen tensors (the
    pretrained weights it was built from); every trainable parameter must be in it."""
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    missing = [n for n in trainable if n not in state_dict]
    if missing:
        raise CheckpointError(
            f'{source}: Checkpoint lacks {len(missing)} trainable parameter(s) of this model, e.g. '
            f'{missing[:5]}. It was saved with a different set of trainable groups '
            '(LoRA targets, unfrozen modules) than this config switches on.'
        )
    for name, tensor in model.state_dict().items():
        state_dict.setdefault(name, tensor)


def load_trainable_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> list[str]:
    """Put ``state`` onto ``model``, accounting for every key; returns the loaded names.

    Every key must be a tensor of ``model.state_dict()`` with the same shape, and every trainable
    parameter of the model must be in ``state``. Frozen tensors not in ``state`` keep the values the
    model was built with (the base checkpoint's).
    """
    expected = model.state_dict()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    unexpected = sorted(k for k in state if k not in expected)
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    missing = [n for n in trainable if n not in state]
    problems = []
    if unexpected:
        hint = (
            ' (4-bit base statistics: it was trained with quantize_base; build the model with the same quantize_base)'
            if any('.weight.quant_state.' in k for k in unexpected)
            else ''
        )
        problems.append(
            f'{len(unexpected)} checkpoint keys that name no tensor of the model built from the config'
            f'{hint}: {unexpected[:20]}'
        )
    if mismatched:
        problems.append(
            f'{len(mismatched)} shape mismatches (was it trained with another config, e.g. another '
            f'LoRA rank?): {mismatched[:20]}'
        )
    if missing:
        problems.append(
            f'{len(missing)} trainable parameters of the model missing from the checkpoint (was it '
            f'trained with other trainable groups or LoRA targets?): {missing[:20]}'
        )
    if problems:
        raise CheckpointError(
            f'{source}: the checkpoint does not fit the model of this config:\n  ' + '\n  '.join(problems)
        )
    full = dict(expected)
    for k, v in state.items():
        full[k] = v.to(expected[k].dtype)
    model.load_state_dict(full, strict=True)
    return sorted(state)


def load_training_checkpoint(model: nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint and load it onto ``model`` strictly; returns its meta."""
    path = resolve_checkpoint(path)
    state, meta = read_training_state(path)
    loaded = load_trainable_state(model, state, str(path))
    logger.info('%s: loaded %d tensors onto the model', path, len(loaded))
    return meta


def load_checkpoint(model: nn.Module, path: str | os.PathLike) -> tuple[str, list[str]]:
    """Load a training checkpoint or an adapter export onto ``model`` (built from the config);
    returns (kind, loaded names). An official-layout directory is not loaded on top of a model: the
    model is built from it (``model_path=DIR``), so it is refused here."""
    kind = checkpoint_kind(path)
    if kind == 'export':
        raise CheckpointError(
            f'{path}: an official-layout model directory; build the model with '
            'model_path=DIR instead of loading it onto one'
        )
    if kind == 'adapter':
        return kind, load_adapter_export(model, path)
    state, _ = read_training_state(path)
    return kind, load_trainable_state(model, state, str(path))


# ---- best_checkpoint.json -----------------------------------------------------------------------
def write_best_record(directory: str | os.PathLike, record: dict[str, Any], filename: str = BEST_RECORD) -> Path:
    """Write the best-checkpoint record atomically (a reader never sees half a file)."""
    path = Path(directory) / filename
    tmp = path.with_name(path.name + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=2, allow_nan=True)
    os.replace(tmp, path)
    return path


def read_best_record(checkpoint: str | os.PathLike) -> Optional[dict[str, Any]]:
    """``best_checkpoint.json`` beside ``checkpoint`` when it describes this checkpoint, else None."""
    p = Path(checkpoint)
    record_path = p.parent / BEST_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f'{record_path}: not valid JSON ({err})') from None
    return record if record.get('checkpoint') == p.name else None


# ---- official-layout exports: deployment settings ------------------------------------------------
def read_export_settings(checkpoint: str | os.PathLike) -> dict[str, Any]:
    """The deployment settings an export recorded in its config.json (``PROJECT_KEY``: val-chosen
    threshold, tiles, window), or {} for anything else."""
    path = Path(checkpoint) / CONFIG_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get(PROJECT_KEY) or {})


# ---- adapter exports ------------------------------------------------------------------------------
def _as_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def check_adapter_config(model: nn.Module, directory: Path) -> None:
    """The export's ``adapter_config.json`` must describe the model's LLM adapter (rank, targets, ...)."""
    llm_cfg = getattr(model.sa2va.language_model, 'peft_config', {}).get(ADAPTER_NAME)
    path = directory / ADAPTER_CONFIG
    if llm_cfg is None or not path.is_file():
        if (llm_cfg is None) != (not path.is_file()):
            raise CheckpointError(
                f'{directory}: the model {"has" if llm_cfg else "has no"} LLM adapter but the '
                f'export {"has" if path.is_file() else "has no"} {ADAPTER_CONFIG}'
            )
        return
    saved = json.loads(path.read_text())
    ours = llm_cfg.to_dict()
    diffs = []
    for key in ('r', 'lora_alpha', 'use_rslora', 'use_dora', 'trainable_token_indices'):
        a, b = saved.get(key), ours.get(key)
        if a != b:
            diffs.append(f'{key}: export {a!r} vs model {b!r}')
    if sorted(_as_list(saved.get('target_modules'))) != sorted(_as_list(ours.get('target_modules'))):
        diffs.append(f'target_modules: export {saved.get("target_modules")!r} vs model {ours.get("target_modules")!r}')
    if diffs:
        raise CheckpointError(
            f'{path}: the adapter does not match the model built from the config: ' + '; '.join(diffs)
        )


def load_adapter_export(model: nn.Module, directory: str | os.PathLike) -> list[str]:
    """Load an ``export_adapter`` folder onto ``model`` (built on the base with the same settings).

    Every tensor of the folder must land on a parameter of the model and every trainable parameter
    must be given (strict accounting, as for training checkpoints). Returns the loaded names.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f'{directory}: no such adapter export directory')
    check_adapter_config(model, directory)
    state: dict[str, torch.Tensor] = {}
    if (directory / ADAPTER_WEIGHTS).is_file():
        for key, tensor in load_file(str(directory / ADAPTER_WEIGHTS)).items():
            try:
                state[from_peft_key(key)] = tensor
            except PeftNameError as err:
                raise CheckpointError(f'{directory / ADAPTER_WEIGHTS}: {err}') from None
    if (directory / MODULES_WEIGHTS).is_file():
        for key, tensor in load_file(str(directory / MODULES_WEIGHTS)).items():
            pieces = official_to_ours(key, tensor, model.sa2va.arch.family)
            if pieces is None or any('#' in ours for ours, _ in pieces):
                raise CheckpointError(f'{directory / MODULES_WEIGHTS}: {key} has no place in the model')
            for ours, piece in pieces:
                state[SA2VA_PREFIX + ours] = piece
    if not state:
        raise CheckpointError(f'{directory}: neither {ADAPTER_WEIGHTS} nor {MODULES_WEIGHTS} found')
    return load_trainable_state(model, state, str(directory))

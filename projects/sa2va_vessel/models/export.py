"""Exporting a trained Sa2VAVesselModel: official Sa2VA directories and standard peft adapters.

Two products (see docs/EXPORT.md):

* ``export_full``: the base checkpoint's official layout with every LoRA layer merged into its base
  weight (``W + scale * B @ A``) and the trained token rows written into ``embed_tokens`` /
  ``lm_head``; the trained projector, ``text_hidden_fcs`` and mask decoder replace the base ones;
  the SAM2 video-memory tensors of the base checkpoint are written back unchanged. Merging runs in
  float32 and the result is cast once to the export dtype. The exported key set is checked to
  equal the base checkpoint's.
* ``export_adapter``: a peft adapter folder (``adapter_config.json`` + ``adapter_model.safetensors``
  in peft's naming; it also carries the trained token rows as peft trainable tokens) plus
  ``sa2va_modules.safetensors`` (the other trained modules under official names) and
  ``export_manifest.json``; ``load_adapter_export`` puts it back onto a model built on the base.

Training checkpoints are read with strict accounting (``load_training_checkpoint``): every key
must name a tensor of the model built from the config, shapes must agree, and every trainable
parameter must be present; anything else is a ``CheckpointError`` naming the keys.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .checkpoint import LM_HEAD, CheckpointError, save_safetensors_sharded, shard_files
from .name_map import official_to_ours, ours_to_official
from .quantize import dequantized_weight, linear4bit_layers

logger = logging.getLogger(__name__)

EXPORT_DTYPES = {'bf16': torch.bfloat16, 'bfloat16': torch.bfloat16, 'fp32': torch.float32, 'float32': torch.float32}
DTYPE_NAMES = {torch.bfloat16: 'bfloat16', torch.float32: 'float32'}
OFFICIAL_AUTO_MAP = {
    'AutoConfig': 'configuration_sa2va_chat.Sa2VAChatConfig',
    'AutoModel': 'modeling_sa2va_chat.Sa2VAChatModel',
    'AutoModelForCausalLM': 'modeling_sa2va_chat.Sa2VAChatModel',
}
# Files of a checkpoint directory that an export carries over unchanged (tokenizer, SAM2 description,
# generation defaults). Python files (the official remote code) are copied too when the base has them.
CARRIED_FILES = (
    'vocab.json',
    'merges.txt',
    'tokenizer.json',
    'tokenizer_config.json',
    'added_tokens.json',
    'special_tokens_map.json',
    'chat_template.jinja',
    'generation_config.json',
    'sam2_config.json',
    'sam2_tiny_config.json',
    # Qwen-VL families: the processor's settings (AutoProcessor needs both)
    'preprocessor_config.json',
    'video_preprocessor_config.json',
)
ADAPTER_CONFIG = 'adapter_config.json'
ADAPTER_WEIGHTS = 'adapter_model.safetensors'
MODULES_WEIGHTS = 'sa2va_modules.safetensors'
MANIFEST = 'export_manifest.json'
EXPORT_INFO = 'export_info.json'
PEFT_PREFIX = 'base_model.model.'
LLM_PREFIX = 'sa2va.language_model.'
SA2VA_PREFIX = 'sa2va.'
ADAPTER_NAME = 'default'
DEEPSPEED_MODEL_STATES = 'mp_rank_00_model_states.pt'


# ---- reading training checkpoints ------------------------------------------------------------
def resolve_checkpoint(path: str | Path) -> Path:
    """A training checkpoint file or DeepSpeed directory; a work dir resolves via ``last_checkpoint``."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f'{path}: no such checkpoint (a .pth file written by the runner, a DeepSpeed '
            f'checkpoint directory holding {DEEPSPEED_MODEL_STATES}, or a work dir with '
            'last_checkpoint)'
        )
    if path.is_dir() and not (path / DEEPSPEED_MODEL_STATES).is_file():
        last = path / 'last_checkpoint'
        if last.is_file():
            target = Path(last.read_text().strip())
            target = target if target.is_absolute() else path / target
            return resolve_checkpoint(target if target.exists() else path / target.name)
        raise CheckpointError(
            f'{path}: a directory without {DEEPSPEED_MODEL_STATES} or last_checkpoint; not a training checkpoint'
        )
    return path


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
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


def load_training_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint and load it onto ``model`` strictly; returns its meta."""
    path = resolve_checkpoint(path)
    state, meta = read_training_state(path)
    loaded = load_trainable_state(model, state, str(path))
    logger.info('%s: loaded %d tensors onto the model', path, len(loaded))
    return meta


# ---- building the model of a config ------------------------------------------------------------
def build_model_from_config(
    config: str | Path, model_path: str | None = None, cfg_options: dict | None = None
) -> nn.Module:
    """The config's ``Sa2VAVesselModel`` in float32 (merging precision), eval mode, no checkpointing."""
    from mmengine.config import Config
    from mmengine.utils import import_modules_from_strings

    from ..registry import MODELS

    cfg = Config.fromfile(str(config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    imports = cfg.get('custom_imports', {}).get('imports', [])  # the project's own: registry locations
    import_modules_from_strings(imports, allow_failed_imports=False)
    model_cfg = copy.deepcopy(cfg.model)
    if model_path is not None:
        model_cfg['model_path'] = str(model_path)
    # Every weight in float32: the frozen base is read losslessly (bf16 -> fp32 is exact), trained
    # weights keep their precision, and the merge runs in fp32; the export casts once at the end.
    model_cfg.update(dtype='float32', gradient_checkpointing=False, sam2_feature_cache_size=0)
    model_cfg.pop('data_preprocessor', None)
    model = MODELS.build(model_cfg)
    return model.eval()


# ---- merging -------------------------------------------------------------------------------------
def _lora_layers(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.lora import LoraLayer

    return {n: m for n, m in module.named_modules() if isinstance(m, LoraLayer)}


def _token_layers(module: nn.Module) -> dict[str, nn.Module]:
    from peft.tuners.trainable_tokens import TrainableTokensLayer

    return {n: m for n, m in module.named_modules() if isinstance(m, TrainableTokensLayer)}


def _clean_name(name: str) -> str:
    """Our name with peft's wrapper levels removed (``q_proj.base_layer.weight`` -> ``q_proj.weight``)."""
    return name.replace('.token_adapter.base_layer.', '.').replace('.base_layer.', '.')


def _lora_delta(layer: nn.Module, name: str) -> torch.Tensor:
    """scale * B @ A in float32 for the single LoRA adapter of ``layer``."""
    if set(layer.lora_A) != {ADAPTER_NAME}:
        raise ValueError(
            f'{name}: LoRA adapters {sorted(layer.lora_A)}; the export merges exactly one, {ADAPTER_NAME!r}'
        )
    if layer.use_dora.get(ADAPTER_NAME) or getattr(layer, 'lora_bias', {}).get(ADAPTER_NAME):
        raise ValueError(f'{name}: DoRA / LoRA bias are not supported by the export')
    if not isinstance(layer.lora_A[ADAPTER_NAME], nn.Linear):
        raise ValueError(f'{name}: only LoRA on Linear layers is supported, got {type(layer.lora_A[ADAPTER_NAME])}')
    a = layer.lora_A[ADAPTER_NAME].weight.detach().float()
    b = layer.lora_B[ADAPTER_NAME].weight.detach().float()
    delta = layer.scaling[ADAPTER_NAME] * (b @ a)
    return delta.T if getattr(layer, 'fan_in_fan_out', False) else delta


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained model's Sa2VA weights with the adapters merged, float32, under ``Sa2VAModules`` names.

    The result has exactly the keys of a plain ``Sa2VAModules.state_dict()`` (no adapter keys).
    """
    sa2va = model.sa2va
    state: dict[str, torch.Tensor] = {}
    # A 4-bit base (quantize_base) is merged as the weight the adapters trained against: its
    # dequantized nf4/fp4 weight, not the original one; bnb's quantization statistics are dropped.
    four_bit = linear4bit_layers(sa2va)
    quant_stats = tuple(f'{name}.weight.' for name in four_bit)
    for name, tensor in sa2va.state_dict().items():
        if 'lora_' in name or 'trainable_tokens_' in name or name.startswith(quant_stats):
            continue
        state[_clean_name(name)] = tensor.detach().float().clone()
    for name, layer in four_bit.items():
        state[_clean_name(f'{name}.weight')] = dequantized_weight(layer)
    for name, layer in _lora_layers(sa2va).items():
        key = f'{name}.weight'
        if key not in state:
            raise RuntimeError(f'{name}: LoRA layer without a base weight {key}')
        state[key] = state[key] + _lora_delta(layer, name)
    for name, layer in _token_layers(sa2va).items():
        if layer.tied_adapter is not None:  # follows the embedding's adapter; tied weights are written once
            continue
        owner = name[: -len('.token_adapter')] if name.endswith('.token_adapter') else name
        key = f'{owner}.weight'
        rows = torch.as_tensor(layer.token_indices[ADAPTER_NAME], dtype=torch.long)
        values = layer.trainable_tokens_delta[ADAPTER_NAME].detach().float()
        state[key] = state[key].index_copy(0, rows, values)
    return state


def official_merged_state(model: nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Merged weights (cast once to ``dtype``) under official names, plus the SAM2 passthrough tensors."""
    state = merged_state_dict(model)
    if model.sa2va.arch.llm.tie_word_embeddings:
        state.pop(LM_HEAD, None)
    state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    official = ours_to_official(state, model.sa2va.arch.family)
    for key, tensor in model.load_report.passthrough.items():
        official[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return {k: v.contiguous() for k, v in official.items()}


def base_checkpoint_keys(path: str | Path) -> set[str]:
    keys: set[str] = set()
    for file in shard_files(Path(path)):
        with safe_open(file, framework='pt') as f:
            keys.update(f.keys())
    return keys


def _carry_files(base: Path, out_dir: Path, python_files: bool = True) -> list[str]:
    copied = []
    for name in CARRIED_FILES:
        if (base / name).is_file():
            shutil.copyfile(base / name, out_dir / name)
            copied.append(name)
    if python_files:
        for file in sorted(base.glob('*.py')):
            shutil.copyfile(file, out_dir / file.name)
            copied.append(file.name)
    return copied


def _set_dtype(cfg: dict, dtype_name: str) -> None:
    present = [k for k in ('dtype', 'torch_dtype') if k in cfg]
    for key in present or ['torch_dtype']:
        cfg[key] = dtype_name


def export_config(base: Path, model: nn.Module, dtype: torch.dtype) -> dict[str, Any]:
    """The base ``config.json`` with template, vocabulary size, auto_map and dtype set for the export."""
    cfg = json.loads((base / 'config.json').read_text())
    dtype_name = DTYPE_NAMES[dtype]
    if model.sa2va.arch.is_qwen:
        return _qwen_export_config(cfg, model, dtype_name)
    cfg['architectures'] = ['Sa2VAChatModel']
    cfg['auto_map'] = dict(OFFICIAL_AUTO_MAP)
    cfg['template'] = model.sa2va.arch.template
    cfg['llm_config']['vocab_size'] = int(model.sa2va.language_model.get_input_embeddings().weight.shape[0])
    cfg['use_llm_lora'] = 0
    cfg['use_backbone_lora'] = 0
    cfg['dtype'] = dtype_name
    cfg['torch_dtype'] = dtype_name
    for sub in ('llm_config', 'vision_config'):
        _set_dtype(cfg[sub], dtype_name)
    return cfg


def _qwen_export_config(cfg: dict[str, Any], model: nn.Module, dtype_name: str) -> dict[str, Any]:
    """Sa2VA-Qwen: the base config as the official conversion leaves it (architectures and auto_map
    unchanged, ``text_config.vocab_size`` = the embedding rows, untied lm_head), with the export dtype."""
    cfg['template'] = model.sa2va.arch.template
    cfg['text_config']['vocab_size'] = int(model.sa2va.language_model.get_input_embeddings().weight.shape[0])
    cfg['tie_word_embeddings'] = False
    cfg['dtype'] = dtype_name
    for sub in ('text_config', 'vision_config'):
        _set_dtype(cfg[sub], dtype_name)
    return cfg


@dataclass
class ExportReport:
    out_dir: Path
    dtype: torch.dtype
    n_tensors: int
    n_lora_merged: int
    token_rows: dict[str, list[int]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f'{self.out_dir}: {self.n_tensors} tensors in {DTYPE_NAMES[self.dtype]}, {self.n_lora_merged} LoRA '
            f'layers merged, token rows {self.token_rows}; files: {", ".join(self.files)}'
        )


def _token_rows(model: nn.Module) -> dict[str, list[int]]:
    return {
        name.replace('.token_adapter', ''): list(layer.token_indices[ADAPTER_NAME])
        for name, layer in _token_layers(model.sa2va).items()
        if layer.tied_adapter is None
    }


# config.json key of this project's deployment settings (the official code ignores unknown keys)
PROJECT_KEY = 'sa2va_vessel'


def deployment_settings(cfg: Any, checkpoint: str | Path) -> dict[str, Any]:
    """What a deployment must reproduce to see the validated numbers, for ``config.json[PROJECT_KEY]``.

    ``threshold``: the val-chosen one of ``best_checkpoint.json`` beside ``checkpoint`` (None when
    the checkpoint is not the recorded best); ``max_dynamic_patch``/``min_dynamic_patch``: the
    InternVL tiles the model was validated with; ``window``: the training crop (sliding-window size
    for larger images). The official ``predict_forward`` uses none of them (0.5 and 12 tiles are
    fixed there; docs/EXPORT.md), so they are recorded, not applied.
    """
    from ..evaluation.inference import best_record_for
    from ..evaluation.predict import training_window

    record = best_record_for(resolve_checkpoint(checkpoint))
    val_dataset = ((cfg.get('val_dataloader') or {}).get('dataset') or {}) if cfg is not None else {}
    base_cfg = (
        json.loads((Path(cfg.model.model_path) / 'config.json').read_text())
        if cfg is not None and Path(str(cfg.model.get('model_path', ''))).joinpath('config.json').is_file()
        else {}
    )
    tiles = val_dataset.get('max_dynamic_patch') or base_cfg.get('max_dynamic_patch', 12)
    return {
        'threshold': None if record is None else record.get('threshold'),
        'threshold_source': 'none: not the recorded best checkpoint'
        if record is None
        else f'best_checkpoint.json ({record.get("threshold_key")}, chosen on val with {record.get("metric")})',
        'max_dynamic_patch': int(tiles),
        'min_dynamic_patch': int(base_cfg.get('min_dynamic_patch', 1)),
        'window': training_window(cfg),
        'official_predict_forward': {'threshold': 0.5, 'max_dynamic_patch': 12, 'prompt': '"<image>\\n" + question'},
    }


def export_full(
    model: nn.Module,
    out_dir: str | Path,
    dtype: torch.dtype = torch.bfloat16,
    provenance: dict[str, Any] | None = None,
    max_shard_bytes: int = 5 * 1024**3,
    settings: dict[str, Any] | None = None,
) -> ExportReport:
    """Write the merged model as an official Sa2VA checkpoint directory (``settings``: see
    ``deployment_settings``; written to config.json under ``PROJECT_KEY``)."""
    if dtype not in DTYPE_NAMES:
        raise ValueError(f'export dtype must be one of {list(DTYPE_NAMES)}, got {dtype}')
    base, out_dir = Path(model.model_path), Path(out_dir)
    official = official_merged_state(model, dtype)
    base_keys = base_checkpoint_keys(base)
    if set(official) != base_keys:
        extra, lacking = sorted(set(official) - base_keys), sorted(base_keys - set(official))
        raise CheckpointError(
            f'export key set differs from the base checkpoint {base}: extra {extra[:20]}, missing {lacking[:20]}'
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in list(out_dir.glob('*.safetensors')) + list(out_dir.glob('*.safetensors.index.json')):
        stale.unlink()
    written = save_safetensors_sharded(official, out_dir, max_shard_bytes=max_shard_bytes)
    config = export_config(base, model, dtype)
    if settings is not None:
        config[PROJECT_KEY] = dict(settings)
    (out_dir / 'config.json').write_text(json.dumps(config, indent=2) + '\n')
    carried = _carry_files(base, out_dir)
    report = ExportReport(
        out_dir=out_dir,
        dtype=dtype,
        n_tensors=len(official),
        n_lora_merged=len(_lora_layers(model.sa2va)),
        token_rows=_token_rows(model),
        files=['config.json'] + [p.name for p in written] + carried,
    )
    info = dict(
        kind='full',
        base_checkpoint=str(base),
        dtype=DTYPE_NAMES[dtype],
        n_tensors=report.n_tensors,
        lora_layers_merged=report.n_lora_merged,
        token_rows=report.token_rows,
        note='LoRA merged as W + scale * B @ A and token rows written into embed_tokens/lm_head, '
        'in float32, then cast once',
        **(provenance or {}),
    )
    if getattr(model, 'quantize_base', None):
        info['base_quantization'] = (
            f'{model.quantize_base}: W is the dequantized 4-bit base weight the adapters were trained on'
        )
    (out_dir / EXPORT_INFO).write_text(json.dumps(info, indent=2) + '\n')
    report.files.append(EXPORT_INFO)
    if not any(name.startswith('modeling_') for name in carried):
        logger.warning(
            '%s: no official modeling_*.py files copied (the base has none); place them there to use '
            'AutoModel.from_pretrained(..., trust_remote_code=True), see docs/EXPORT.md',
            out_dir,
        )
    logger.info(report.summary())
    return report


# ---- adapter-only export -----------------------------------------------------------------------
def _peft_to_ours(key: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` -> our parameter name."""
    if not key.startswith(PEFT_PREFIX):
        raise CheckpointError(f'adapter key {key!r} lacks the peft prefix {PEFT_PREFIX!r}')
    rest = key[len(PEFT_PREFIX) :]
    for part in ('lora_A', 'lora_B'):
        marker = f'.{part}.weight'
        if rest.endswith(marker):
            return LLM_PREFIX + rest[: -len(marker)] + f'.{part}.{ADAPTER_NAME}.weight'
    if rest.endswith('.trainable_tokens_delta'):
        return LLM_PREFIX + rest + f'.{ADAPTER_NAME}'
    raise CheckpointError(f'adapter key {key!r}: not a LoRA A/B weight nor a trainable-token table')


def _trained_module_names(model: nn.Module) -> list[str]:
    """Trainable parameters outside the LLM adapters (projector, text_hidden_fcs, mask decoder)."""
    return [
        n for n, p in model.named_parameters() if p.requires_grad and 'lora_' not in n and 'trainable_tokens_' not in n
    ]


def export_adapter(
    model: nn.Module, out_dir: str | Path, dtype: torch.dtype = torch.bfloat16, provenance: dict[str, Any] | None = None
) -> ExportReport:
    """Write the peft adapter of the LLM and the other trained modules (official names)."""
    from peft import get_peft_model_state_dict

    if dtype not in DTYPE_NAMES:
        raise ValueError(f'export dtype must be one of {list(DTYPE_NAMES)}, got {dtype}')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    llm = model.sa2va.language_model
    files = []
    adapter_keys: list[str] = []
    peft_config = getattr(llm, 'peft_config', {}).get(ADAPTER_NAME)
    if peft_config is not None:
        adapter = get_peft_model_state_dict(llm, adapter_name=ADAPTER_NAME)
        adapter = {PEFT_PREFIX + k: v.detach().to(dtype).contiguous() for k, v in adapter.items()}
        for key in adapter:  # every peft key must map back onto a parameter of ours
            _peft_to_ours(key)
        save_file(adapter, str(out_dir / ADAPTER_WEIGHTS), metadata={'format': 'pt'})
        cfg = copy.deepcopy(peft_config)
        cfg.base_model_name_or_path = str(model.model_path)
        cfg.inference_mode = True
        cfg.save_pretrained(str(out_dir))
        files += [ADAPTER_CONFIG, ADAPTER_WEIGHTS]
        adapter_keys = sorted(adapter)
    params = dict(model.named_parameters())
    modules = {n[len(SA2VA_PREFIX) :]: params[n].detach().to(dtype) for n in _trained_module_names(model)}
    official = {k: v.contiguous() for k, v in ours_to_official(modules, model.sa2va.arch.family).items()}
    if official:
        save_file(official, str(out_dir / MODULES_WEIGHTS), metadata={'format': 'pt'})
        files.append(MODULES_WEIGHTS)
    groups = {g: len(ps) for g, ps in model.trainable_groups().items()}
    manifest = dict(
        kind='adapter',
        base_checkpoint=str(model.model_path),
        dtype=DTYPE_NAMES[dtype],
        trainable_groups=groups,
        files={
            ADAPTER_CONFIG: f'peft LoraConfig of the LLM ({type(llm).__name__} = language_model of the base)',
            ADAPTER_WEIGHTS: 'LoRA A/B of the LLM and the trained token rows (peft trainable tokens: full new '
            'rows of embed_tokens/lm_head at trainable_token_indices), peft key names; load with '
            'peft.PeftModel.from_pretrained(llm, dir) or set_peft_model_state_dict',
            MODULES_WEIGHTS: 'other trained modules under official Sa2VA names (projector mlp1.*, '
            'text_hidden_fcs.*, trained parts of grounding_encoder.sam2_model.sam_mask_decoder.*); '
            'they replace the base tensors of the same name',
        }
        if adapter_keys
        else {MODULES_WEIGHTS: 'trained modules under official Sa2VA names'},
        adapter_tensors=adapter_keys,
        module_tensors=sorted(official),
        token_rows=_token_rows(model),
        how_to_load='projects.sa2va_vessel.models.export.load_adapter_export(Sa2VAVesselModel(model_path=BASE, '
        '<same lora/trainable settings>), dir); or tools/export_hf.py without --adapter-only for a '
        'merged official checkpoint',
        **(provenance or {}),
    )
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + '\n')
    files.append(MANIFEST)
    report = ExportReport(
        out_dir=out_dir,
        dtype=dtype,
        n_tensors=len(adapter_keys) + len(official),
        n_lora_merged=0,
        token_rows=_token_rows(model),
        files=files,
    )
    logger.info(report.summary())
    return report


def _check_adapter_config(model: nn.Module, directory: Path) -> None:
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


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def load_adapter_export(model: nn.Module, directory: str | Path) -> list[str]:
    """Load an ``export_adapter`` folder onto ``model`` (built on the base with the same settings).

    Every tensor of the folder must land on a parameter of the model and every trainable parameter
    must be given (strict accounting, as for training checkpoints). Returns the loaded names.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f'{directory}: no such adapter export directory')
    _check_adapter_config(model, directory)
    state: dict[str, torch.Tensor] = {}
    if (directory / ADAPTER_WEIGHTS).is_file():
        for key, tensor in load_file(str(directory / ADAPTER_WEIGHTS)).items():
            state[_peft_to_ours(key)] = tensor
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

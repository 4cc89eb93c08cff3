"""Reading and writing Sa2VA checkpoint directories in the official Hugging Face layout.

Loading accounts for every key: each official tensor is mapped onto exactly one place of
``Sa2VAModules`` (or kept aside as a SAM2 video-memory passthrough), every parameter and
persistent buffer of the modules is filled, shapes must agree, and anything else is an error that
names the keys. Shards are read one at a time in the checkpoint's dtype, so peak host memory is
about one model plus one shard.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers.modeling_utils import no_init_weights

from .configuration import Sa2VAArchitecture, architecture_from_config, read_architecture
from .layerwise_init import check_initialised, materialise_by_parts, parameters_on_meta
from .name_map import POINT_EMBED, TIED_COPIES, assemble_point_embed, is_passthrough, official_to_ours, ours_to_official
from .quantize import check_quant_type, logical_numel, mark_loaded_in_4bit, quantize_layer_linears
from .sa2va import Sa2VABase, build_sa2va

logger = logging.getLogger(__name__)

INDEX_FILE = 'model.safetensors.index.json'
SINGLE_FILE = 'model.safetensors'
LM_HEAD = 'language_model.lm_head.weight'
EMBED = 'language_model.model.embed_tokens.weight'


class CheckpointError(RuntimeError):
    """A checkpoint directory whose tensors do not fit the model; the message lists every problem."""


@dataclass
class LoadReport:
    path: Path
    dtype: torch.dtype
    n_tensors: int = 0
    n_parameters: int = 0
    passthrough: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        kept = sum(t.numel() for t in self.passthrough.values())
        return (
            f'{self.path}: {self.n_tensors} tensors, {self.n_parameters:,} parameters loaded in {self.dtype}; '
            f'{len(self.passthrough)} SAM2 video-memory tensors ({kept:,} values) kept aside unchanged '
            '(unused for single images, written back on export)'
        )


def shard_files(path: Path) -> list[Path]:
    """The safetensors files of a directory, checked against its index when sharded."""
    index = path / INDEX_FILE
    if index.is_file():
        weight_map = json.loads(index.read_text())['weight_map']
        shards = sorted(set(weight_map.values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise CheckpointError(f'{index}: names shard(s) that are not in the directory: {missing}')
        return [path / s for s in shards]
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    raise CheckpointError(f'{path}: no {SINGLE_FILE} and no {INDEX_FILE}; not a Sa2VA checkpoint directory')


def checkpoint_dtype(path: Path) -> torch.dtype:
    """The dtype the checkpoint stores its weights in (that of its first floating tensor)."""
    with safe_open(shard_files(path)[0], framework='pt') as f:
        for key in f.keys():
            tensor = f.get_slice(key)
            dtype = getattr(
                torch, {'F32': 'float32', 'BF16': 'bfloat16', 'F16': 'float16'}.get(tensor.get_dtype(), 'float32')
            )
            return dtype
    raise CheckpointError(f'{path}: the checkpoint holds no tensors')


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_modules(
    arch: Sa2VAArchitecture, dtype: torch.dtype, init_weights: bool, attn_implementation: str = 'sdpa'
) -> Sa2VABase:
    """Sa2VA modules of ``arch``'s family in ``dtype``; random init only when asked (loading overwrites all)."""
    ctx = contextlib.nullcontext() if init_weights else no_init_weights()
    with default_dtype(dtype), ctx:
        modules = build_sa2va(arch, attn_implementation=attn_implementation)
    return modules.to(dtype)


def _expected_tensors(modules: Sa2VABase) -> dict[str, torch.Tensor]:
    state = modules.state_dict(keep_vars=True)
    for copy in TIED_COPIES:
        state.pop(copy, None)
    if modules.arch.llm.tie_word_embeddings:
        state.pop(LM_HEAD, None)
    return state


def _assign(modules: Sa2VABase, name: str, tensor: torch.Tensor) -> None:
    owner_name, _, attr = name.rpartition('.')
    owner = modules.get_submodule(owner_name)
    current = getattr(owner, attr)
    current.data = tensor.to(current.dtype)


def load_sa2va(
    path: str | Path, dtype: torch.dtype | None = None, attn_implementation: str = 'sdpa'
) -> tuple[Sa2VABase, LoadReport]:
    """Build ``Sa2VAModules`` from an official-layout directory, accounting for every key."""
    path = Path(path)
    arch = read_architecture(path)
    files = shard_files(path)
    dtype = dtype or checkpoint_dtype(path)
    modules = build_modules(arch, dtype, init_weights=False, attn_implementation=attn_implementation)
    expected = _expected_tensors(modules)
    report = LoadReport(path=path, dtype=dtype)

    filled: set[str] = set()
    unexpected, mismatched, duplicated = [], [], []
    point_rows: dict[str, torch.Tensor] = {}

    def place(ours: str, tensor: torch.Tensor, source: str) -> None:
        if ours not in expected:
            unexpected.append(f'{source} -> {ours}')
        elif tuple(expected[ours].shape) != tuple(tensor.shape):
            mismatched.append(f'{source}: checkpoint {tuple(tensor.shape)} vs model {tuple(expected[ours].shape)}')
        elif ours in filled:
            duplicated.append(f'{source} -> {ours}')
        else:
            _assign(modules, ours, tensor)
            filled.add(ours)

    for file in files:
        with safe_open(file, framework='pt') as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                report.n_tensors += 1
                if is_passthrough(key):
                    report.passthrough[key] = tensor
                    continue
                pieces = official_to_ours(key, tensor, arch.family)
                if pieces is None:
                    unexpected.append(f'{file.name}: {key} (no rule maps this name)')
                    continue
                for ours, piece in pieces:
                    if '#' in ours:
                        point_rows[ours] = piece
                    else:
                        place(ours, piece, f'{file.name}: {key}')
                del tensor, pieces
    if point_rows:
        place(POINT_EMBED[1], assemble_point_embed(point_rows), 'point_embeddings.*')

    missing = sorted(set(expected) - filled)
    problems = []
    if missing:
        problems.append(f'{len(missing)} model tensors missing from the checkpoint: {missing[:20]}')
    if unexpected:
        problems.append(f'{len(unexpected)} checkpoint tensors with no place in the model: {unexpected[:20]}')
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches: {mismatched[:20]}')
    if duplicated:
        problems.append(f'{len(duplicated)} tensors given twice: {duplicated[:20]}')
    if problems:
        raise CheckpointError(
            f'{path}: the checkpoint does not fit the model built from its config.json:\n  ' + '\n  '.join(problems)
        )

    for copy, source in TIED_COPIES.items():
        _assign(modules, copy, modules.get_buffer(source))
    if arch.llm.tie_word_embeddings:
        modules.language_model.tie_weights()
    report.n_parameters = sum(p.numel() for p in modules.parameters())
    logger.info(report.summary())
    return modules, report


def build_preset(
    preset: str,
    dtype: torch.dtype,
    device: str | torch.device | None = None,
    vocab_size: int | None = None,
    attn_implementation: str = 'sdpa',
    seed: int = 0,
    quantize_base: str | None = None,
) -> tuple[Sa2VABase, LoadReport]:
    """Random Sa2VA modules at a preset's shapes, drawn directly on ``device`` (no files, no download).

    For benchmarks: the weights are transformers' random init, seeded; the architecture is the
    one ``tools/make_tiny_sa2va.py`` would write for the preset. With ``quantize_base`` ('nf4',
    'fp4': QLoRA) the modules are built without storage and drawn on ``device`` part by part, each
    LLM decoder layer quantized as soon as it is drawn (``models/layerwise_init.py``): at no time
    does more than one decoder layer of the LLM sit there in ``dtype``.
    """
    from .presets import official_config, preset_vocab_size

    vocab_size = vocab_size or preset_vocab_size(preset)
    config, sam2 = official_config(preset, vocab_size=vocab_size, dtype=str(dtype).replace('torch.', ''))
    arch = architecture_from_config(config, sam2, Path(f'preset:{preset}'))
    torch.manual_seed(seed)
    if quantize_base is None:
        with torch.device(device or 'cpu'):
            modules = build_modules(arch, dtype, init_weights=True, attn_implementation=attn_implementation)
    else:
        modules = _build_quantized_by_layers(arch, dtype, device or 'cpu', quantize_base, attn_implementation)
    for copy, source in TIED_COPIES.items():
        _assign(modules, copy, modules.get_buffer(source))
    # a 4-bit weight counts the weights it stands for, not its packed bytes
    report = LoadReport(path=arch.path, dtype=dtype, n_parameters=sum(logical_numel(p) for p in modules.parameters()))
    return modules, report


def _build_quantized_by_layers(
    arch: Sa2VAArchitecture, dtype: torch.dtype, device: str | torch.device, quant_type: str, attn_implementation: str
) -> Sa2VABase:
    check_quant_type(quant_type)
    with parameters_on_meta():
        modules = build_modules(arch, dtype, init_weights=False, attn_implementation=attn_implementation)
    llm = modules.language_model
    if arch.llm.tie_word_embeddings:
        llm.tie_weights()  # a build without init leaves that to the loader
    materialise_by_parts(
        modules,
        llm.model.layers,
        device,
        after_layer=lambda layer: quantize_layer_linears(layer, quant_type, compute_dtype=dtype),
    )
    mark_loaded_in_4bit(llm)
    if torch.device(device).type == 'cuda':
        torch.cuda.empty_cache()  # give the freed bf16 blocks of the layers back
    check_initialised(modules, f'preset {arch.path} drawn on {device}')
    return modules


def official_state_dict(
    modules: Sa2VABase, passthrough: dict[str, torch.Tensor] | None = None, dtype: torch.dtype | None = None
) -> dict[str, torch.Tensor]:
    """The modules' weights under official names (plus the passthrough tensors), optionally cast."""
    state = {k: v.detach() for k, v in modules.state_dict().items()}
    if modules.arch.llm.tie_word_embeddings:
        state.pop(LM_HEAD, None)
    official = ours_to_official(state, modules.arch.family)
    for key, tensor in (passthrough or {}).items():
        official[key] = tensor
    if dtype is not None:
        official = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in official.items()}
    return {k: v.contiguous() for k, v in official.items()}


def save_safetensors_sharded(
    state: dict[str, torch.Tensor], out_dir: Path, max_shard_bytes: int = 5 * 1024**3
) -> list[Path]:
    """Write ``state`` as ``model.safetensors`` or as shards + index (the transformers layout)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(state):
        nbytes = state[key].numel() * state[key].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = state[key]
        size += nbytes
    metadata = {'format': 'pt'}
    if len(shards) == 1:
        save_file(shards[0], str(out_dir / SINGLE_FILE), metadata=metadata)
        return [out_dir / SINGLE_FILE]
    names = [f'model-{i + 1:05d}-of-{len(shards):05d}.safetensors' for i in range(len(shards))]
    weight_map = {}
    for name, shard in zip(names, shards):
        save_file(shard, str(out_dir / name), metadata=metadata)
        weight_map.update({k: name for k in shard})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (out_dir / INDEX_FILE).write_text(
        json.dumps({'metadata': {'total_size': total}, 'weight_map': weight_map}, indent=2, sort_keys=True)
    )
    return [out_dir / n for n in names]

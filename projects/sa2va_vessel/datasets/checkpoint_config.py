"""The one reader of a Sa2VA checkpoint's ``config.json``: its family and its input settings.

Both the data side (``VesselSegDataset``, the sample builder, the video dataset) and the model
side (``models/configuration.py``) read the file through this module, so they cannot disagree on
the tile size, the template or the tiling.

The fallbacks are the official code's (``Sa2VAChatModel.__init__`` of the Hugging Face release):

- ``force_image_size``: when absent or null, ``vision_config.image_size`` (``image_size =
  config.force_image_size or config.vision_config.image_size``); when both are absent the file
  describes no tile size and loading stops with an error naming it.
- ``template``: required for the InternVL family (the official model calls
  ``config.template.replace('-', '_')`` and looks it up; a missing one fails there too); ``-`` is
  read as ``_`` as there. The Qwen-VL families' official code never reads the field (their
  training and conversion use ``qwen_chat``), so a missing one means ``qwen_chat``.
- ``vision_config.patch_size`` 14, ``downsample_ratio`` 0.5, ``min/max_dynamic_patch`` 1/12,
  ``use_thumbnail`` true, ``dynamic_image_size`` true (false: one resized tile): the defaults of
  the official config classes.

The Qwen-VL families take their image settings from ``preprocessor_config.json`` when present
(``qwen_image_processing.py``), else the family's defaults.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from transformers import Qwen2_5_VLConfig, Qwen3VLConfig

from .qwen_image_processing import FAMILY_DEFAULTS, QwenImageSettings, settings_from_preprocessor_config

CONFIG_FILE = 'config.json'
PREPROCESSOR_FILE = 'preprocessor_config.json'

# The MLLM families (``CheckpointInputs.family``, ``Sa2VAArchitecture.family``).
INTERNVL, QWEN2_5_VL, QWEN3_VL = 'internvl', 'qwen2_5_vl', 'qwen3_vl'
QWEN_FAMILIES = (QWEN2_5_VL, QWEN3_VL)
# (text_config.model_type, vision_config.model_type) -> family, transformers config class
QWEN_CONFIGS = {
    ('qwen2_5_vl_text', 'qwen2_5_vl'): (QWEN2_5_VL, Qwen2_5_VLConfig),
    ('qwen3_vl_text', 'qwen3_vl'): (QWEN3_VL, Qwen3VLConfig),
}
# config.json keys that are the official wrapper's, not the transformers config's
WRAPPER_KEYS = ('architectures', 'auto_map', 'model_type', 'template', '_name_or_path', 'transformers_version')
QWEN_TEMPLATE = 'qwen_chat'


class CheckpointConfigError(ValueError):
    """A checkpoint directory whose configuration this project cannot load."""


class MissingConfigFile(CheckpointConfigError, FileNotFoundError):
    """A configuration file the checkpoint directory lacks (also a ``FileNotFoundError``)."""


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object file, or a ``CheckpointConfigError`` naming it."""
    try:
        cfg = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MissingConfigFile(f'{path}: missing; a Sa2VA checkpoint directory needs it') from None
    except json.JSONDecodeError as err:
        raise CheckpointConfigError(f'{path}: not valid JSON ({err})') from None
    if not isinstance(cfg, dict):
        raise CheckpointConfigError(f'{path}: holds a JSON {type(cfg).__name__}, not an object')
    return cfg


def read_checkpoint_config(model_path: str | Path) -> dict[str, Any]:
    """The parsed ``config.json`` of a Sa2VA checkpoint directory."""
    path = Path(model_path)
    if not path.is_dir():
        raise CheckpointConfigError(f'{path}: not a directory; pass a local Sa2VA checkpoint directory')
    return read_json_file(path / CONFIG_FILE)


def is_qwen_layout(cfg: dict[str, Any]) -> bool:
    """A Sa2VA-Qwen config (``text_config``, no ``llm_config``)."""
    return 'text_config' in cfg and 'llm_config' not in cfg


def detect_family(cfg: dict[str, Any], path: Path) -> str:
    """The MLLM family of an official Sa2VA ``config.json`` content (``path``: its directory)."""
    if 'llm_config' in cfg:
        return INTERNVL
    text = (cfg.get('text_config') or {}).get('model_type')
    vision = (cfg.get('vision_config') or {}).get('model_type')
    if (text, vision) in QWEN_CONFIGS:
        return QWEN_CONFIGS[(text, vision)][0]
    raise CheckpointConfigError(
        f'{Path(path) / CONFIG_FILE}: text_config.model_type {text!r} with vision_config.model_type {vision!r} is '
        f'no Sa2VA family this project knows; known: {sorted(QWEN_CONFIGS)} (Qwen2.5-VL, Qwen3-VL) and '
        'InternVL (llm_config)'
    )


def qwen_mllm_config(cfg: dict[str, Any], path: Path) -> Qwen2_5_VLConfig | Qwen3VLConfig:
    """The transformers config (``Qwen2_5_VLConfig`` / ``Qwen3VLConfig``) of a Sa2VA-Qwen ``config.json``."""
    family = detect_family(cfg, path)
    if family not in QWEN_FAMILIES:
        raise CheckpointConfigError(f'{Path(path) / CONFIG_FILE}: a {family} config, not a Qwen-VL one')
    key = (cfg['text_config'].get('model_type'), cfg['vision_config'].get('model_type'))
    config_class = QWEN_CONFIGS[key][1]
    kept = {k: v for k, v in cfg.items() if k not in WRAPPER_KEYS}
    try:
        return config_class(**kept)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointConfigError(
            f'{Path(path) / CONFIG_FILE}: not a valid {config_class.__name__} ({err})'
        ) from None


def template_of(cfg: dict[str, Any], path: Path) -> str:
    """The prompt template name (see module docstring for the fallback)."""
    template = cfg.get('template')
    if template is None and is_qwen_layout(cfg):
        return QWEN_TEMPLATE
    if not isinstance(template, str) or not template:
        raise CheckpointConfigError(
            f"{Path(path) / CONFIG_FILE}: no 'template' entry (the official model needs one, e.g. 'qwen_chat')"
        )
    return template.replace('-', '_')


def force_image_size_of(cfg: dict[str, Any], path: Path) -> int:
    """The InternVL tile size: ``force_image_size``, else ``vision_config.image_size``."""
    size = cfg.get('force_image_size') or (cfg.get('vision_config') or {}).get('image_size')
    if not size:
        raise CheckpointConfigError(
            f'{Path(path) / CONFIG_FILE}: neither force_image_size nor '
            'vision_config.image_size is set; the tile size is unknown'
        )
    return int(size)


@dataclass(frozen=True)
class CheckpointInputs:
    """What a checkpoint's config.json fixes about the model inputs: family, template and tiling.

    For the Qwen-VL families the InternVL tiling fields are ``image_size=0``, one tile, no
    thumbnail, and ``qwen_image`` / ``mllm_config`` are set.
    """

    template: str
    image_size: int
    use_thumbnail: bool
    min_num: int
    max_num: int
    tokens_per_tile: int
    family: str = INTERNVL
    qwen_image: Optional[QwenImageSettings] = None
    mllm_config: Any = None  # the transformers Qwen-VL config (token ids, merge size) for M-RoPE ids
    downsample_ratio: float = 0.5
    patch_size: int = 14


def _qwen_inputs(cfg: dict[str, Any], path: Path) -> CheckpointInputs:
    family = detect_family(cfg, path)
    pre = path / PREPROCESSOR_FILE
    settings = FAMILY_DEFAULTS[family]
    if pre.is_file():
        try:
            settings = settings_from_preprocessor_config(read_json_file(pre), settings)
        except (TypeError, ValueError) as exc:
            raise CheckpointConfigError(f'{pre}: not a valid image processor config ({exc})') from exc
    mllm = qwen_mllm_config(cfg, path)
    if (
        settings.patch_size != mllm.vision_config.patch_size
        or settings.merge_size != mllm.vision_config.spatial_merge_size
    ):
        raise CheckpointConfigError(
            f"{pre}: patch/merge size {settings.patch_size}/{settings.merge_size} differ from config.json's "
            f'vision_config ({mllm.vision_config.patch_size}/{mllm.vision_config.spatial_merge_size})'
        )
    return CheckpointInputs(
        template=template_of(cfg, path),
        image_size=0,
        use_thumbnail=False,
        min_num=1,
        max_num=1,
        tokens_per_tile=0,
        family=family,
        qwen_image=settings,
        mllm_config=mllm,
        patch_size=int(mllm.vision_config.patch_size),
    )


def inputs_from_config(
    cfg: dict[str, Any], path: str | Path, max_dynamic_patch: Optional[int] = None
) -> CheckpointInputs:
    """The input settings of a ``config.json`` content (``path``: the checkpoint directory, for
    messages and ``preprocessor_config.json``); ``max_dynamic_patch`` overrides the file's."""
    path = Path(path)
    if is_qwen_layout(cfg):  # Sa2VA-Qwen2.5-VL / -Qwen3-VL
        return _qwen_inputs(cfg, path)
    image_size = force_image_size_of(cfg, path)
    patch = int((cfg.get('vision_config') or {}).get('patch_size', 14))
    ratio = float(cfg.get('downsample_ratio', 0.5))
    min_num = int(cfg.get('min_dynamic_patch', 1))
    max_num = int(max_dynamic_patch if max_dynamic_patch is not None else cfg.get('max_dynamic_patch', 12))
    if not cfg.get('dynamic_image_size', True):
        min_num = max_num = 1  # InternVL without dynamic tiling: one resized tile
    return CheckpointInputs(
        template=template_of(cfg, path),
        image_size=image_size,
        use_thumbnail=bool(cfg.get('use_thumbnail', True)),
        min_num=min_num,
        max_num=max_num,
        # InternVL's num_image_token: (image_size / patch_size)^2 * downsample_ratio^2
        tokens_per_tile=int((image_size // patch) ** 2 * ratio**2),
        downsample_ratio=ratio,
        patch_size=patch,
    )


def checkpoint_inputs(model_path: str | Path, max_dynamic_patch: Optional[int] = None) -> CheckpointInputs:
    """The input settings of a Sa2VA checkpoint directory (``max_dynamic_patch`` overrides its own)."""
    return inputs_from_config(read_checkpoint_config(model_path), model_path, max_dynamic_patch)

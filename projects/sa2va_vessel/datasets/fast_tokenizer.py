"""Load a checkpoint's tokenizer as a fast tokenizer, converting a slow one only once.

A checkpoint folder with ``vocab.json`` + ``merges.txt`` and no ``tokenizer.json`` makes
transformers convert the slow tokenizer to a fast one on every load: seconds of CPU and a few
hundred MB per process, in every rank and every loader worker that builds one. That conversion
is done once here and its ``tokenizer.json`` kept in a cache folder keyed by the content of the
tokenizer files, written atomically (temporary folder, then rename), so concurrent ranks never
read a half-written file. The checkpoint folder itself is never written to (it may be read-only).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TOKENIZER_FILES = (
    'tokenizer_config.json',
    'special_tokens_map.json',
    'added_tokens.json',
    'vocab.json',
    'merges.txt',
    'chat_template.jinja',
)
CACHE_ENV = 'SA2VA_VESSEL_CACHE'


def cache_root() -> Path:
    """``$SA2VA_VESSEL_CACHE`` or ``~/.cache/sa2va_vessel``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / '.cache' / 'sa2va_vessel')


def tokenizer_key(folder: Path) -> str:
    """A digest of the tokenizer files' names and bytes."""
    digest = hashlib.sha256()
    for name in TOKENIZER_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b'\0' + path.read_bytes() + b'\0')
    return digest.hexdigest()[:24]


def _auto(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except Exception as exc:  # transformers raises many types; all mean "not a tokenizer dir"
        raise ValueError(f'{path}: cannot load a tokenizer from this folder ({exc})') from exc


def load_fast_tokenizer(path: str | Path) -> Any:
    """The tokenizer of ``path``, fast, with the slow-to-fast conversion cached (module docstring)."""
    folder = Path(path)
    if (folder / 'tokenizer.json').is_file() or not (folder / 'vocab.json').is_file():
        return _auto(folder)
    cached = cache_root() / 'tokenizers' / tokenizer_key(folder)
    if (cached / 'tokenizer.json').is_file():
        return _auto(cached)
    tokenizer = _auto(folder)
    if not getattr(tokenizer, 'is_fast', False):
        return tokenizer
    cached.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix='.staging-', dir=cached.parent))
    try:
        tokenizer.save_pretrained(str(staging))
        os.replace(staging, cached)  # atomic; a concurrent writer of the same key wins equally
    except OSError:
        pass  # another process renamed first, or the cache is read-only: the conversion stands
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return tokenizer

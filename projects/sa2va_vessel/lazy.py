"""Package attributes imported on first use (PEP 562), for the packages' ``__init__``.

A package's ``__init__`` that imported its modules eagerly would make every light module of it
(a tool's argument parser, the split protocols) import torch and transformers. Registration does
not depend on these imports: the registries import their modules themselves (``registry.py``).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``: ``exports`` maps a name to its module
    (relative to the package), e.g. ``{'train': 'runner'}``."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f'module {package!r} has no attribute {name!r}')
        return getattr(import_module(f'{package}.{exports[name]}'), name)

    return __getattr__, sorted(exports)

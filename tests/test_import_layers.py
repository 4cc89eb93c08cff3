"""The packages import each other downward only, and through public names only.

Layers, top to bottom: tools -> benchmark -> engine -> evaluation -> models -> datasets -> the
top-level modules of ``projects/sa2va_vessel`` (e.g. a registry). A module may import its own
package freely and any lower layer through public names; an import of a higher layer (what makes an
import cycle between packages) or of another package's ``_private`` name (``from x import _y``,
``x._y`` on an imported module, or a ``_private`` module) fails. Read from the source with ``ast``
(imports inside functions count too); nothing is executed.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from tests.conftest import REPO_ROOT

PROJECT = ('projects', 'sa2va_vessel')
ROOT_LAYER = '<top-level>'
LAYERS = (ROOT_LAYER, 'datasets', 'models', 'evaluation', 'engine', 'benchmark', 'tools')  # bottom first


@dataclass(frozen=True)
class Violation:
    where: str
    what: str

    def __str__(self) -> str:
        return f'{self.where}: {self.what}'


def _is_private(name: str) -> bool:
    return name.startswith('_') and not (name.startswith('__') and name.endswith('__'))


@functools.lru_cache(maxsize=None)
def layer_of(parts: tuple[str, ...], repo: Path) -> Optional[str]:
    """The layer of a module given by its dotted parts from the repository root; None: not ours."""
    if parts[:1] == ('tools',):
        return 'tools'
    if parts[:2] != PROJECT:
        return None
    if len(parts) > 2 and (repo.joinpath(*PROJECT, parts[2])).is_dir():
        return parts[2]
    return ROOT_LAYER


def module_parts(path: Path, repo: Path) -> tuple[str, ...]:
    rel = path.relative_to(repo).with_suffix('')
    parts = tuple(rel.parts)
    return parts[:-1] if parts[-1] == '__init__' else parts


def _package_parts(path: Path, repo: Path) -> tuple[str, ...]:
    """The package a module's relative imports start from."""
    return tuple(path.relative_to(repo).parent.parts)


@functools.lru_cache(maxsize=None)
def _is_module(parts: tuple[str, ...], repo: Path) -> bool:
    base = repo.joinpath(*parts)
    return base.with_suffix('.py').is_file() or (base / '__init__.py').is_file()


def imports_of(
    tree: ast.AST, path: Path, repo: Path
) -> Iterator[tuple[int, tuple[str, ...], list[str], dict[str, tuple]]]:
    """(line, target module parts, imported names, {bound alias: module parts}) of every import."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = tuple(alias.name.split('.'))
                bound = {alias.asname: target} if alias.asname else {}
                yield node.lineno, target, [], bound
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_parts(path, repo)
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = base + (tuple(node.module.split('.')) if node.module else ())
            else:
                target = tuple((node.module or '').split('.'))
            names = [a.name for a in node.names]
            bound = {
                (a.asname or a.name): target + (a.name,) for a in node.names if _is_module(target + (a.name,), repo)
            }
            yield node.lineno, target, names, bound


def check_source(source: str | ast.AST, path: Path, repo: Path) -> list[Violation]:
    """The violations of one module's source or tree (``path``: where it lives in ``repo``)."""
    here = layer_of(module_parts(path, repo), repo)
    if here is None:
        return []
    tree = ast.parse(source, filename=str(path)) if isinstance(source, str) else source
    found: list[Violation] = []
    foreign_modules: dict[str, tuple[str, ...]] = {}
    where = str(path.relative_to(repo))
    for line, target, names, bound in imports_of(tree, path, repo):
        there = layer_of(target, repo)
        if there is None or there == here:
            continue
        dotted = '.'.join(target)
        if LAYERS.index(there) > LAYERS.index(here):
            found.append(
                Violation(
                    f'{where}:{line}',
                    f'{here} imports {dotted} of the higher layer {there} (order: {" -> ".join(reversed(LAYERS))})',
                )
            )
        inner = target[3:] if there != ROOT_LAYER else target[2:]
        private = [n for n in names if _is_private(n)] + [p for p in inner if _is_private(p)]
        if private:
            found.append(Violation(f'{where}:{line}', f'imports private {private} of {dotted} ({there})'))
        foreign_modules.update(bound)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in foreign_modules
            and _is_private(node.attr)
        ):
            module = '.'.join(foreign_modules[node.value.id])
            found.append(Violation(f'{where}:{node.lineno}', f'uses private {module}.{node.attr}'))
    return found


def project_files(repo: Path) -> list[Path]:
    return sorted(repo.joinpath(*PROJECT).rglob('*.py')) + sorted((repo / 'tools').glob('*.py'))


@functools.lru_cache(maxsize=1)
def project_trees() -> dict[Path, ast.AST]:
    """Every module of the project and of tools/, parsed once."""
    return {f: ast.parse(f.read_text(), filename=str(f)) for f in project_files(REPO_ROOT)}


def test_no_upward_or_private_import_between_packages() -> None:
    trees = project_trees()
    assert len(trees) > 100  # the walk reaches the whole project
    found = [v for f, tree in trees.items() for v in check_source(tree, f, REPO_ROOT)]
    assert not found, 'imports against the layer order or of private names:\n' + '\n'.join(map(str, found))


def test_the_walk_sees_cross_package_imports() -> None:
    """Not vacuous: the project's real downward imports are resolved to their layers."""
    seen: set[tuple[str, str]] = set()
    for path, tree in project_trees().items():
        here = layer_of(module_parts(path, REPO_ROOT), REPO_ROOT)
        for _, target, _, _ in imports_of(tree, path, REPO_ROOT):
            there = layer_of(target, REPO_ROOT)
            if there is not None and there != here:
                seen.add((here, there))
    assert {
        ('models', 'datasets'),
        ('evaluation', 'models'),
        ('engine', 'evaluation'),
        ('engine', 'models'),
        ('benchmark', 'engine'),
        ('tools', 'engine'),
        ('tools', 'evaluation'),
    } <= seen


def test_planted_violations_are_found(tmp_path: Path) -> None:
    """Each kind of violation, planted in a throw-away tree of the same layout, is reported."""
    pkg = tmp_path.joinpath(*PROJECT)
    for sub in ('datasets', 'models', 'engine', 'evaluation'):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / '__init__.py').write_text('')
    (pkg / '__init__.py').write_text('')
    (pkg / 'models' / 'lora.py').write_text('def _rows_forward(): pass\n')
    (pkg / 'engine' / 'hooks.py').write_text('')
    (tmp_path / 'tools').mkdir()
    cases = {
        pkg / 'datasets' / 'a.py': ('def f():\n    from ..models.lora import add_lora\n', 'higher layer models'),
        pkg / 'evaluation' / 'b.py': ('from projects.sa2va_vessel.engine.hooks import x\n', 'higher layer engine'),
        pkg / 'engine' / 'c.py': ('from ..models.lora import _rows_forward\n', "private ['_rows_forward']"),
        pkg / 'engine' / 'd.py': ('from ..models import lora\nlora._rows_forward()\n', 'uses private'),
        tmp_path / 'tools' / 'e.py': (
            'import projects.sa2va_vessel.models.lora as L\nL._rows_forward\n',
            'uses private',
        ),
    }
    for path, (source, expected) in cases.items():
        found = check_source(source, path, tmp_path)
        assert len(found) == 1 and expected in str(found[0]), (path.name, found)
    # allowed: downward, public, and private names inside one's own package
    fine = {
        pkg / 'engine' / 'f.py': 'from ..models.lora import add_lora\nfrom .hooks import _x\n',
        pkg / 'models' / 'g.py': 'from ..datasets import readers\nfrom .lora import _rows_forward\n',
    }
    for path, source in fine.items():
        assert check_source(source, path, tmp_path) == []

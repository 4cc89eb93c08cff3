"""The project's registry scope (projects/sa2va_vessel/registry.py): every class a config can name
registers in a project registry, that registry imports its module by itself (``locations``), and
nothing of the project lands in mmengine's root registries."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO_ROOT, repo_env

PACKAGE = REPO_ROOT / 'projects' / 'sa2va_vessel'


def registrations() -> list[tuple[str, str, str, str]]:
    """(registry, name, module, where the registry was imported from) of every
    ``@REGISTRY.register_module()`` in the package's source."""
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        tree = ast.parse(path.read_text(), str(path))
        module = '.'.join(path.relative_to(REPO_ROOT).with_suffix('').parts)
        imported = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                source = '.' * node.level + (node.module or '')
                imported.update({alias.asname or alias.name: source for alias in node.names})
        for node in ast.walk(tree):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Attribute)
                    and deco.func.attr == 'register_module'
                    and isinstance(deco.func.value, ast.Name)
                ):
                    registry = deco.func.value.id
                    found.append((registry, node.name, module, imported.get(registry, '?')))
    return found


def test_every_registration_uses_a_project_registry_that_lists_its_module() -> None:
    from projects.sa2va_vessel import registry

    found = registrations()
    assert len(found) >= 15, found  # models, datasets, transforms, collate, metrics, hooks, loops
    for name, cls, module, source in found:
        assert source in ('..registry', 'projects.sa2va_vessel.registry'), (
            f'{module}.{cls} registers into {name} imported from {source!r}, not the project registry'
        )
        locations = registry.PROJECT_REGISTRIES[name]._locations
        assert module in locations, f'{module} registers {cls} in {name} but is not in its locations {locations}'


def test_only_the_registry_module_imports_mmengines_root_registries() -> None:
    """A build through mmengine's root registry finds the project's classes only while some earlier
    runner left the project's default scope set: it worked in the suite and failed in a fresh
    process (``load_eval_model`` did this)."""
    offenders = []
    for path in sorted(PACKAGE.rglob('*.py')):
        if path == PACKAGE / 'registry.py':
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == 'mmengine.registry':
                offenders.append(f'{path.relative_to(REPO_ROOT)}:{node.lineno}')
    assert not offenders, f'import the project registries (projects/sa2va_vessel/registry.py) instead: {offenders}'


def test_every_class_is_found_by_name_and_none_is_in_mmengines_root_registries() -> None:
    import mmengine.registry.root as root
    from mmengine.registry import FUNCTIONS, MODELS

    from projects.sa2va_vessel import registry

    for name, cls, module, _ in registrations():
        assert registry.PROJECT_REGISTRIES[name].get(cls).__module__ == module, (name, cls)
    # mmengine's runner looks collate functions up on its root registry, with the scope prefix
    assert FUNCTIONS.get('sa2va_vessel.vessel_collate').__module__ == 'projects.sa2va_vessel.datasets.collate'
    with registry.project_scope(), MODELS.switch_scope_and_registry(None) as models:
        assert models is registry.MODELS  # a root registry builds from the project's in its scope
    leaked = [
        f'{reg.name}: {key}'
        for reg in vars(root).values()
        if hasattr(reg, '_module_dict')
        for key, obj in reg._module_dict.items()
        if getattr(obj, '__module__', '').startswith('projects.')
    ]
    assert leaked == [], "project classes registered in mmengine's root registries"


FRESH = r"""
import sys
from projects.sa2va_vessel.registry import METRICS
module = 'projects.sa2va_vessel.evaluation.vessel_metric'
assert 'torch' not in sys.modules and module not in sys.modules, 'the registry module must import nothing heavy'
assert METRICS.get('VesselSegMetric').__module__ == module   # imported through the locations only
print('ok')
"""


def test_a_fresh_process_imports_a_class_when_it_is_named() -> None:
    out = subprocess.run(
        [sys.executable, '-c', FRESH], cwd=REPO_ROOT, env=repo_env(), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr[-3000:]

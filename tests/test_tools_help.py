"""Every file in tools/ runs from an uninstalled checkout and answers --help without doing work.

Each tool runs in a subprocess with PYTHONPATH unset, from another directory, and with an installed
sa2va-vessel hidden (``pip install -e`` would otherwise make ``projects`` importable whether or not
the tool finds the checkout itself). The tools parse their arguments before they import torch, so
the whole module takes a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

TOOLS = sorted(p for p in (REPO_ROOT / 'tools').iterdir() if p.is_file())

# Runs the tool as `python tools/X.py` would (its folder first on sys.path), after taking away every
# way to `projects` but the tool's own: path entries holding the checkout, and import finders of an
# editable install (a finder in front that resolves `projects` on sys.path only).
UNINSTALLED = r"""
import importlib.machinery, os, runpy, sys
tool = sys.argv[1]
sys.path[:] = [os.path.dirname(tool)] + [
    p for p in sys.path[1:] if not os.path.isdir(os.path.join(p or '.', 'projects', 'sa2va_vessel'))]

class CheckoutOnly:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != 'projects':
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, sys.path)
        if spec is None:
            raise ModuleNotFoundError("No module named 'projects'", name=name)
        return spec

sys.meta_path.insert(0, CheckoutOnly)
sys.argv = sys.argv[1:]
runpy.run_path(tool, run_name='__main__')
"""


def command(tool: Path) -> list[str]:
    if tool.suffix == '.py':
        return [sys.executable, '-c', UNINSTALLED, str(tool), '--help']
    if tool.suffix == '.sh':
        return ['bash', str(tool), '--help']
    raise AssertionError(f'{tool}: a tool of unknown kind; add how to run it to {__file__}')


@pytest.mark.parametrize('tool', TOOLS, ids=[t.name for t in TOOLS])
def test_tool_answers_help_from_an_uninstalled_checkout(tool: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    env['OMP_NUM_THREADS'] = '1'
    out = subprocess.run(command(tool), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, f'{tool.name} --help: exit {out.returncode}\n{text[-3000:]}'
    usage = out.stdout.lower()
    assert 'usage:' in usage and tool.name in usage, f'{tool.name} --help printed no usage:\n{text[-3000:]}'
    assert not list(tmp_path.iterdir()), f'{tool.name} --help wrote files: {list(tmp_path.iterdir())}'


def test_every_tool_is_covered() -> None:
    # a tool without a known kind would fail above; this pins the list the test walks to the folder
    assert {t.name for t in TOOLS} >= {'train.py', 'make_tiny_sa2va.py', 'dist_train.sh', 'lint.sh', 'setup.sh'}

"""Loader workers re-import the launching script as ``__mp_main__`` (fork-server and spawn start
methods). The tools that start loaders must not import torch at their top level, or every
worker imports torch, mmengine.runner and DeepSpeed again before its first sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name='__mp_main__')
print(' '.join(m for m in ('torch', 'mmengine.runner', 'deepspeed', 'transformers') if m in sys.modules))
"""


@pytest.mark.parametrize('tool', ['train.py', 'test.py', 'predict.py', 'benchmark.py'])
def test_reimport_as_mp_main_is_light(tool):
    out = subprocess.run(
        [sys.executable, '-c', PROBE, str(ROOT / 'tools' / tool)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '', f'tools/{tool} imported at module level: {out.stdout.strip()}'

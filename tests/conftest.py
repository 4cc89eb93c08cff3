"""Generic test helpers: repository paths, free ports, subprocesses with timeouts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, one intra-op thread per worker. Torch's default is one thread per core, so
    two workers on the CI machine's two cores ran four busy OpenMP threads, and a training step in
    the suite took 3.7 s against 0.57 s alone (``test_tiny_model_overfits_four_images``: 1129 s)."""
    if os.environ.get('PYTEST_XDIST_WORKER'):
        os.environ['OMP_NUM_THREADS'] = '1'  # what subprocesses inherit
        import torch

        torch.set_num_threads(1)


def free_port() -> int:
    """A localhost TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def repo_env(extra: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The current environment with the repository on PYTHONPATH (plus ``extra``)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get('PYTHONPATH', '')) if p)
    env.setdefault('OMP_NUM_THREADS', '1')  # two CPU cores: do not oversubscribe
    env.update(extra or {})
    return env


def run_cmd(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Optional[Mapping[str, str]] = None,
    cwd: Optional[Path] = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; kill the whole group on timeout.

    A process group, so torchrun's workers die with it. On failure (``check``) or timeout the
    assertion message carries the tail of the combined output.
    """
    proc = subprocess.Popen(
        list(cmd),
        cwd=str(cwd or REPO_ROOT),
        env=dict(env or repo_env()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f'timed out after {timeout}s: {" ".join(cmd)}\n{out[-6000:]}')
    result = subprocess.CompletedProcess(list(cmd), proc.returncode, out, '')
    if check and proc.returncode != 0:
        raise AssertionError(f'exit {proc.returncode}: {" ".join(cmd)}\n{out[-6000:]}')
    return result


def python_cmd(script: str, *args: str) -> list[str]:
    """``[sys.executable, <repo>/script, *args]``."""
    return [sys.executable, str(REPO_ROOT / script), *args]


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Sa2VA checkpoint in the official layout, written once per session."""
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va

    return write_random_sa2va(tmp_path_factory.mktemp('tiny_sa2va'), preset='tiny', seed=0)


@pytest.fixture(scope='session')
def tiny_video_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint with SAM2's video-memory tensors too (``predict.py --video``, ``test.py --video``)."""
    from projects.sa2va_vessel.models.random_checkpoint import write_random_sa2va

    return write_random_sa2va(tmp_path_factory.mktemp('tiny_video_sa2va'), preset='tiny', seed=0, video_memory=True)


@pytest.fixture(scope='session')
def synthetic_vessels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic vessel set (256 px, so SAM2's stride-4 logits are 1 px of the image)."""
    from projects.sa2va_vessel.datasets.synthetic import write_synthetic_dataset

    root = tmp_path_factory.mktemp('synthetic_vessels')
    write_synthetic_dataset(root, n=8, seed=0, size=256, val_fraction=0.25)
    return root

"""Loader workers: the open-file limit before they start; gone before engine.runner.train returns."""

from __future__ import annotations

import multiprocessing
import resource
from types import SimpleNamespace

import torch
from torch.utils.data import DataLoader, TensorDataset

from projects.sa2va_vessel.engine.loader_workers import raise_open_file_limit, shut_down_loader_workers


def _workers(loader_iter) -> list:
    return [w for w in getattr(loader_iter, '_workers', [])]


def test_persistent_workers_are_shut_down():
    data = TensorDataset(torch.arange(8.0))
    train = DataLoader(data, batch_size=2, num_workers=1, persistent_workers=True)
    val = DataLoader(data, batch_size=2, num_workers=1, persistent_workers=True)
    train_iter = iter(train)  # what IterBasedTrainLoop's infinite iterator holds
    next(train_iter)
    for _ in val:  # a finished validation epoch keeps its workers (persistent)
        pass
    workers = _workers(train_iter) + _workers(val._iterator)
    assert len(workers) == 2 and all(w.is_alive() for w in workers)
    runner = SimpleNamespace(
        _train_loop=SimpleNamespace(dataloader=train, dataloader_iterator=SimpleNamespace(_iterator=train_iter)),
        _val_loop=SimpleNamespace(dataloader=val),
        _test_loop={'type': 'unbuilt'},
    )
    assert shut_down_loader_workers(runner) == 2
    for w in workers:
        w.join(timeout=10)
    assert not any(w.is_alive() for w in workers)
    assert not [c for c in multiprocessing.active_children() if c in workers]
    assert shut_down_loader_workers(runner) == 0  # twice is harmless


def test_open_file_limit_raised_within_the_hard_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        low = min(256, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
        new_soft, new_hard = raise_open_file_limit(wanted=1024)
        expected = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
        assert (new_soft, new_hard) == (expected, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (expected, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_workers_forked_by_the_fork_server_print_a_stack_on_a_fault(tmp_path):
    """After prepare_loader_workers, a fork-server worker has faulthandler on (inherited from the
    server, which starts with PYTHONFAULTHANDLER=1). Run in a fresh process: the fork server is
    one per process, and an earlier test may have started it."""
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    script = tmp_path / 'probe.py'
    script.write_text(
        'import faulthandler, multiprocessing\n'
        'from projects.sa2va_vessel.engine.loader_workers import prepare_loader_workers\n'
        'def probe(_):\n'
        '    return faulthandler.is_enabled()\n'
        "if __name__ == '__main__':\n"
        "    prepare_loader_workers('forkserver')\n"
        "    with multiprocessing.get_context('forkserver').Pool(1) as pool:\n"
        "        print('worker', pool.map(probe, [0])[0], 'trainer', faulthandler.is_enabled())\n"
    )
    env = {k: v for k, v in __import__('os').environ.items() if k != 'PYTHONFAULTHANDLER'}
    env['PYTHONPATH'] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'worker True trainer True' in out.stdout

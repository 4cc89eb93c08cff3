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


def _run_in_a_fresh_process(script):
    """Run ``script`` in a fresh interpreter (the fork server is one per process, and an earlier
    test may have started it), without PYTHONFAULTHANDLER from this environment."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    env = {k: v for k, v in os.environ.items() if k != 'PYTHONFAULTHANDLER'}
    env['PYTHONPATH'] = str(REPO_ROOT)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_workers_forked_by_the_fork_server_print_a_stack_on_a_fault(tmp_path):
    """After prepare_loader_workers, a fork-server worker has faulthandler on (inherited from the
    server, which starts with PYTHONFAULTHANDLER=1). Run in a fresh process: the fork server is
    one per process, and an earlier test may have started it."""
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
    out = _run_in_a_fresh_process(script)
    assert 'worker True trainer True' in out.stdout


def test_the_runners_loaders_keep_their_worker_init_and_enable_faulthandler_after_it():
    from projects.sa2va_vessel.engine.loader_workers import FaultStacksWorkerInit
    from projects.sa2va_vessel.engine.runner import ResumableFlexibleRunner, ResumableRunner

    calls = []
    for runner_class in (ResumableRunner, ResumableFlexibleRunner):
        loader = DataLoader(TensorDataset(torch.arange(4.0)), num_workers=1, worker_init_fn=calls.append)
        built = runner_class.build_dataloader(loader)
        assert isinstance(built.worker_init_fn, FaultStacksWorkerInit)
        assert built.worker_init_fn.inner == calls.append
        assert runner_class.build_dataloader(built).worker_init_fn.inner == calls.append  # not wrapped twice
    no_workers = ResumableRunner.build_dataloader(DataLoader(TensorDataset(torch.arange(4.0))))
    assert no_workers.worker_init_fn is None  # nothing runs in the trainer's own process
    import faulthandler

    was = faulthandler.is_enabled()
    try:
        faulthandler.disable()
        FaultStacksWorkerInit(calls.append)(3)
        assert calls == [3] and faulthandler.is_enabled()
    finally:
        (faulthandler.enable if was else faulthandler.disable)()


def test_a_worker_that_segfaults_in_its_loop_prints_where(tmp_path):
    """Device call 58 lost a loader worker to a segmentation fault with only torch's line in the log:
    inside the worker loop torch's signal handlers replace faulthandler's. With the wrapper the
    runners put on their loaders (the test above) the worker prints its Python stack; without it
    only torch's line (the control)."""
    script = tmp_path / 'crash.py'
    script.write_text(
        'import os, signal, sys\n'
        'from torch.utils.data import DataLoader, Dataset\n'
        'def crash_in_getitem():\n'
        '    os.kill(os.getpid(), signal.SIGSEGV)\n'
        'class Crashing(Dataset):\n'
        '    def __len__(self):\n'
        '        return 4\n'
        '    def __getitem__(self, i):\n'
        '        crash_in_getitem()\n'
        "if __name__ == '__main__':  # the workers import this file again: only the dataset above\n"
        '    from projects.sa2va_vessel.engine.loader_workers import prepare_loader_workers, with_worker_fault_stacks\n'
        "    prepare_loader_workers('forkserver')\n"
        "    for which, build in (('plain', lambda loader: loader), ('runner', with_worker_fault_stacks)):\n"
        "        print('=== ' + which, file=sys.stderr, flush=True)\n"
        "        loader = build(DataLoader(Crashing(), num_workers=1, multiprocessing_context='forkserver'))\n"
        '        try:\n'
        '            next(iter(loader))\n'
        '        except RuntimeError as e:\n'
        "            print(which, 'loader raised:', e)\n"
    )
    out = _run_in_a_fresh_process(script)
    assert 'plain loader raised:' in out.stdout and 'runner loader raised:' in out.stdout, out.stdout[-2000:]
    plain_run, runner_run = out.stderr.split('=== plain')[1].split('=== runner')
    assert 'Fatal Python error: Segmentation fault' in runner_run, runner_run[-2000:]
    assert 'in crash_in_getitem' in runner_run and 'in __getitem__' in runner_run
    assert 'Unexpected segmentation fault encountered in worker' in plain_run
    assert 'crash_in_getitem' not in plain_run

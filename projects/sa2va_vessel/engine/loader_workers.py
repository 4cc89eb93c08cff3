"""The data-loader workers' life: how they start, what they may hold, and their shutdown.

* Start: with the ``forkserver`` start method (default_runtime.py: the main process holds CUDA
  and the Rust tokenizer's threads, which ``fork`` would copy mid-state) the fork server imports
  the data code once and every worker forks from it, ready to unpickle the dataset.
* Crashes: a worker that dies of a signal leaves only torch's one line ("Unexpected segmentation
  fault encountered in worker", device calls 32 and 58). ``PYTHONFAULTHANDLER=1`` is set before the
  fork server starts, so the server enables faulthandler and every worker forked from it inherits
  it: a fault before the worker's loop (unpickling the dataset, imports) prints its Python stack.
  In the loop torch's own signal handlers replace faulthandler's, so every loader the runners
  build (:class:`FaultStacksLoadersMixin`) gets :class:`FaultStacksWorkerInit`: it switches
  faulthandler on again after the loader's own ``worker_init_fn``; a fault then prints the worker's
  Python stack ("Fatal Python error: Segmentation fault") in place of torch's line. The trainer
  enables faulthandler for itself too.
* Open files: each batch tensor reaches the main process as a file descriptor (torch's
  ``file_descriptor`` sharing), so 12-14 workers with prefetching hold hundreds at once; the
  soft ``RLIMIT_NOFILE`` is raised to the hard limit (capped) before any worker starts.
* Shutdown: see :func:`shut_down_loader_workers`.

With ``persistent_workers=True`` (the shipped configs) every loader keeps its worker processes
and, with ``pin_memory=True``, a pin-memory thread, until the loader object is collected. After
``runner.train()`` that happens only at interpreter exit, where multiprocessing's exit handler,
the fork server and the pin-memory thread are torn down in an order that can block: on the H200
every benchmark process hung after its last line until ``timeout`` killed it (docs/bench/call14,
rc 124). Closing the workers here, while everything they need is alive, makes the exit prompt.

torch has no public "close" for a loader; the iterator's ``_shutdown_workers`` is what its own
``__del__`` calls, and is safe to call twice.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import resource
from typing import Any, Callable, Sequence

from mmengine.logging import print_log
from torch.utils.data import DataLoader

LOOPS = ('_train_loop', '_val_loop', '_test_loop')
#: The soft open-file limit asked for (never above the hard limit).
OPEN_FILES_WANTED = 65536


def prepare_loader_workers(start_method: str | None, preload: Sequence[str] = ()) -> None:
    """Before any loader starts: the modules the fork server imports (``preload``, e.g. the data
    modules of ``registry.DATA_MODULES``) and a soft open-file limit that fits."""
    # the fork server is a fresh interpreter started with this environment (see the module docstring)
    os.environ.setdefault('PYTHONFAULTHANDLER', '1')
    if not faulthandler.is_enabled():
        faulthandler.enable()
    if start_method == 'forkserver':
        multiprocessing.set_forkserver_preload(list(preload))
    soft, hard = raise_open_file_limit()
    print_log(
        f'loader workers: start method {start_method or "default"}, open-file limit {soft} (hard {hard})',
        logger='current',
    )


class FaultStacksWorkerInit:
    """A loader's ``worker_init_fn``: the loader's own one (mmengine's seeding), then faulthandler.

    torch's worker loop installs its C handlers for SIGSEGV/SIGBUS/SIGFPE before it calls
    ``worker_init_fn``. A worker forked from the fork server has faulthandler on already (its
    handlers replaced by torch's), and ``enable`` is then a no-op: so off, then on. A fault then
    prints "Fatal Python error" and the worker's Python stacks in place of torch's one line, and the
    worker still dies of the signal, which the trainer's loader reports ("killed by signal").
    """

    def __init__(self, inner: Callable[[int], None] | None) -> None:
        self.inner = inner

    def __call__(self, worker_id: int) -> None:
        if self.inner is not None:
            self.inner(worker_id)
        faulthandler.disable()
        faulthandler.enable(all_threads=True)


def with_worker_fault_stacks(loader: DataLoader) -> DataLoader:
    """Give ``loader``'s workers Python stacks on a fatal signal (:class:`FaultStacksWorkerInit`)."""
    if loader.num_workers > 0 and not isinstance(loader.worker_init_fn, FaultStacksWorkerInit):
        loader.worker_init_fn = FaultStacksWorkerInit(loader.worker_init_fn)
    return loader


class FaultStacksLoadersMixin:
    """For a runner class (before mmengine's ``Runner``/``FlexibleRunner`` in its bases): every
    loader it builds gets :func:`with_worker_fault_stacks`. mmengine's loops build their loaders
    through ``runner.build_dataloader``."""

    @classmethod
    def build_dataloader(
        cls, dataloader: DataLoader | dict, seed: int | None = None, diff_rank_seed: bool = False
    ) -> DataLoader:
        return with_worker_fault_stacks(super().build_dataloader(dataloader, seed, diff_rank_seed))


def raise_open_file_limit(wanted: int = OPEN_FILES_WANTED) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards ``wanted`` (capped by the hard limit); returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft, hard


def shut_down_loader_workers(runner: Any) -> int:
    """Stop the worker processes of every built loop's loader; returns how many loaders had some."""
    closed = 0
    for name in LOOPS:
        loop = getattr(runner, name, None)
        loader = getattr(loop, 'dataloader', None)
        if not isinstance(loader, DataLoader):
            continue  # the loop was never built (still a config dict) or has no loader
        iterators = [getattr(loader, '_iterator', None)]
        infinite = getattr(loop, 'dataloader_iterator', None)  # IterBasedTrainLoop's wrapper
        iterators.append(getattr(infinite, '_iterator', None))
        live = [
            it
            for it in iterators
            if it is not None and hasattr(it, '_shutdown_workers') and not getattr(it, '_shutdown', False)
        ]
        for it in {id(it): it for it in live}.values():
            it._shutdown_workers()
        closed += bool(live)
        loader._iterator = None
    return closed

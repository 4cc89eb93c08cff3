"""Shut a finished run's data-loader workers down before ``engine.runner.train`` returns.

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

from typing import Any

from torch.utils.data import DataLoader

LOOPS = ('_train_loop', '_val_loop', '_test_loop')


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
        live = [it for it in iterators if it is not None and hasattr(it, '_shutdown_workers')
                and not getattr(it, '_shutdown', False)]
        for it in {id(it): it for it in live}.values():
            it._shutdown_workers()
        closed += bool(live)
        loader._iterator = None
    return closed

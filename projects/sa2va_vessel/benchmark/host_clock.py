"""Where the trainer's host time goes over a window of iterations.

The b8 step is bound by the host (device call 51's profile), and one command spread 30.4-50.3
samples/s across processes (calls 51-55) while the GPU ran at its top clock. ``HostClock`` tells
the candidate causes apart from one run's numbers, without a profiler's own overhead:

* the main thread's CPU time against the window's wall time: near 1, the thread computes all the
  time (a slower run then did more work, or ran on a slower or shared core); well under 1, it
  waits (for the device, a lock, the GIL, or a core it was switched off);
* the main thread's involuntary context switches: the scheduler took its core away (other threads
  or processes wanted it);
* the process's CPU time (every thread of the trainer, not its loader workers);
* Python's garbage collections in the window, per generation, and their time.
"""

from __future__ import annotations

import gc
import resource
import time
from typing import Any, Optional


def _thread_usage() -> Optional[resource.struct_rusage]:
    try:
        return resource.getrusage(resource.RUSAGE_THREAD)
    except (AttributeError, OSError):  # RUSAGE_THREAD is Linux-only
        return None


class HostClock:
    """``start()`` ... ``stop()`` around a window run on this thread; ``summary(steps)`` per step."""

    def __init__(self) -> None:
        self._start: Optional[dict[str, Any]] = None
        self._totals: Optional[dict[str, Any]] = None
        self._gc_started: Optional[float] = None
        self._gc_counts = [0, 0, 0]
        self._gc_seconds = 0.0

    def _gc_callback(self, phase: str, info: dict) -> None:
        if phase == 'start':
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self._gc_seconds += time.perf_counter() - self._gc_started
            self._gc_counts[info['generation']] += 1
            self._gc_started = None

    def start(self) -> None:
        self._gc_counts, self._gc_seconds, self._totals = [0, 0, 0], 0.0, None
        usage = _thread_usage()
        self._start = dict(
            wall=time.perf_counter(),
            thread_cpu=time.thread_time(),
            process_cpu=time.process_time(),
            involuntary=usage.ru_nivcsw if usage else None,
            voluntary=usage.ru_nvcsw if usage else None,
        )
        gc.callbacks.append(self._gc_callback)

    def stop(self) -> None:
        if self._start is None:
            raise RuntimeError('HostClock.stop() before start()')
        if self._gc_callback in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)
        usage = _thread_usage()
        s = self._start
        self._totals = dict(
            wall=time.perf_counter() - s['wall'],
            thread_cpu=time.thread_time() - s['thread_cpu'],
            process_cpu=time.process_time() - s['process_cpu'],
            involuntary=None if usage is None or s['involuntary'] is None else usage.ru_nivcsw - s['involuntary'],
            voluntary=None if usage is None or s['voluntary'] is None else usage.ru_nvcsw - s['voluntary'],
        )
        self._start = None

    def summary(self, steps: int) -> Optional[dict]:
        """Per step of the window, but the window's count of collections (None before start/stop)."""
        t = self._totals
        if t is None or steps <= 0:
            return None

        def per_step(value: Optional[float], scale: float = 1e3) -> Optional[float]:
            return None if value is None else round(scale * value / steps, 2)

        return {
            'wall_ms': per_step(t['wall']),
            'main_thread_cpu_ms': per_step(t['thread_cpu']),
            'main_thread_busy_fraction': round(t['thread_cpu'] / t['wall'], 3) if t['wall'] > 0 else None,
            'process_cpu_ms': per_step(t['process_cpu']),
            'involuntary_switches': per_step(t['involuntary'], 1.0),
            'voluntary_switches': per_step(t['voluntary'], 1.0),
            'gc_collections_in_window': dict(zip(('gen0', 'gen1', 'gen2'), self._gc_counts)),
            'gc_ms': per_step(self._gc_seconds),
        }

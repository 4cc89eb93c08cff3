"""HostClock: the trainer's host time over a window, told apart: computing, waiting, collecting."""

from __future__ import annotations

import gc
import time

import pytest

from projects.sa2va_vessel.benchmark.host_clock import HostClock


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_a_computing_thread_reads_busy_and_a_sleeping_one_idle():
    clock = HostClock()
    clock.start()
    _spin(0.3)
    clock.stop()
    busy = clock.summary(steps=3)
    assert busy['wall_ms'] == pytest.approx(100, rel=0.3)
    assert busy['main_thread_busy_fraction'] > 0.4  # a 2-core CI machine shares its cores
    assert busy['main_thread_cpu_ms'] <= busy['wall_ms'] * 1.05
    clock.start()
    time.sleep(0.3)
    clock.stop()
    idle = clock.summary(steps=3)
    assert idle['main_thread_busy_fraction'] < 0.2
    assert idle['voluntary_switches'] is None or idle['voluntary_switches'] > 0  # sleeping yields the core


def test_collections_in_the_window_are_counted_and_timed_and_none_after_it():
    clock = HostClock()
    clock.start()
    junk = [[i] for i in range(200_000)]  # enough objects for a full collection to take time
    gc.collect()
    clock.stop()
    summary = clock.summary(steps=1)
    assert summary['gc_collections_in_window']['gen2'] >= 1 and summary['gc_ms'] > 0
    gc.collect()  # after stop: not counted, and the callback is gone
    assert clock.summary(steps=1) == summary
    assert clock._gc_callback not in gc.callbacks
    del junk


def test_no_summary_before_a_window_and_stop_needs_start():
    clock = HostClock()
    assert clock.summary(steps=5) is None
    with pytest.raises(RuntimeError, match='before start'):
        clock.stop()

"""Per-thread CPU from /proc: the figures `python -m bench.threads` prints."""

from __future__ import annotations

import os
import threading

from bench.cpu import CpuMeter, cpu_seconds, thread_sample


def test_threads_are_told_apart_and_add_up_to_the_process() -> None:
    started, stop = threading.Event(), threading.Event()

    def idle() -> None:
        started.set()
        stop.wait()

    worker = threading.Thread(target=idle)
    worker.start()
    started.wait()
    try:
        sample = thread_sample(os.getpid())
        total = cpu_seconds(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert "main" in sample.seconds
    assert any(name.endswith(f"-{worker.native_id}") for name in sample.seconds)  # unnamed: by id
    # Exited threads keep no row, so the threads can only fall short of the process (read after).
    assert sum(sample.seconds.values()) <= total + 0.01
    assert all(value >= 0 for value in sample.switches.values())


def test_per_request_figures_work_on_thread_samples() -> None:
    before = thread_sample(os.getpid())
    sum(range(200_000))  # some CPU on the main thread
    after = thread_sample(os.getpid())
    figures = CpuMeter.per_request(before, after, 10)
    assert set(figures) >= {"main", "total"}
    assert figures["total"] >= figures["main"] >= 0

"""Per-thread CPU from /proc: the figures `python -m bench.threads` prints."""

from __future__ import annotations

import os
import threading

from bench.cpu import CpuMeter, CpuSample, _host_seconds, cpu_seconds, thread_sample


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


def test_host_seconds_are_read_from_the_all_cores_line_of_proc_stat() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    stat = "cpu  100 20 30 5000 7 1 2 40 0 0\ncpu0 50 10 15 2500 3 1 1 20 0 0\n"
    busy, stolen = _host_seconds(stat)
    # user + nice + system + irq + softirq; idle and iowait are not busy, steal is its own.
    assert busy == (100 + 20 + 30 + 1 + 2) / ticks
    assert stolen == 40 / ticks


def test_host_cores_are_steal_and_what_the_meter_did_not_measure() -> None:
    before = CpuSample({"gateway": 1.0, "broker": 2.0}, {}, host_busy=10.0, host_stolen=1.0)
    after = CpuSample({"gateway": 1.5, "broker": 2.5}, {}, host_busy=12.0, host_stolen=1.4)
    # Over 2 s: the machine was busy 2 CPU-s, the measured processes 1 of them.
    assert CpuMeter.host(before, after, 2.0) == {"steal": 0.2, "other": 0.5}


def test_host_cores_read_from_this_machine_are_never_negative() -> None:
    meter = CpuMeter({"self": os.getpid()})
    before = meter.sample()
    sum(range(200_000))
    after = meter.sample()
    figures = CpuMeter.host(before, after, 1.0)
    assert set(figures) == {"steal", "other"}
    assert min(figures.values()) >= 0

"""Per-thread CPU from /proc: the figures `python -m bench.threads` prints."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from bench.cpu import CpuMeter, CpuSample, _schedstat_waited, _stolen_seconds, cpu_seconds, thread_sample


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


def test_stolen_seconds_are_read_from_the_all_cores_line_of_proc_stat() -> None:
    stat = "cpu  100 20 30 5000 7 1 2 40 0 0\ncpu0 50 10 15 2500 3 1 1 20 0 0\n"
    assert _stolen_seconds(stat) == 40 / os.sysconf("SC_CLK_TCK")  # the eighth figure: steal


def test_host_cores_are_the_steal_over_the_window() -> None:
    before = CpuSample({"gateway": 1.0}, {}, host_stolen=1.0)
    after = CpuSample({"gateway": 1.5}, {}, host_stolen=1.4)
    assert CpuMeter.host(before, after, 2.0) == {"steal": 0.2}


def test_host_cores_read_from_this_machine_are_never_negative() -> None:
    meter = CpuMeter({"self": os.getpid()})
    before = meter.sample()
    sum(range(200_000))
    after = meter.sample()
    figures = CpuMeter.host(before, after, 1.0)
    assert set(figures) == {"steal"}
    assert figures["steal"] >= 0


def test_run_queue_wait_is_the_second_figure_of_schedstat() -> None:
    assert _schedstat_waited("812000000 4500000000 7\n") == 4.5  # ns on a core, ns waiting, slices


def test_two_processes_sharing_one_core_each_wait_for_it() -> None:
    core = min(os.sched_getaffinity(0))
    spin = f"import os; os.sched_setaffinity(0, {{{core}}}); print(flush=True); exec('while True: pass')"
    spinners = [subprocess.Popen([sys.executable, "-c", spin], stdout=subprocess.PIPE) for _ in range(2)]
    try:
        for spinner in spinners:
            assert spinner.stdout is not None
            assert spinner.stdout.readline()  # pinned and spinning
        meter = CpuMeter({f"spinner{n}": spinner.pid for n, spinner in enumerate(spinners)})
        before = meter.sample()
        while min(cpu_seconds(spinner.pid) for spinner in spinners) < 0.2 + max(before.seconds.values()):
            os.sched_yield()
        after = meter.sample()
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.communicate()
    waited = CpuMeter.waited_per_request(before, after, 1)
    # Each ran at least 0.2 s on the one core, so together they waited at least that long for it.
    assert set(waited) == {"spinner0", "spinner1"}
    assert sum(waited.values()) >= 0.15e6, waited

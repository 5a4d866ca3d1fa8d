"""CPU and memory accounting per process from ``/proc/<pid>/stat``, ``status`` and ``schedstat``.

On two shared cores the ceiling is CPU-seconds per request summed over every process
on the path (PERFORMANCE.md 8.1), so each step records utime+stime of the broker JVM,
the gateway, the worker and the load generator, and divides by the requests served.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Fields 14 and 15 of /proc/<pid>/stat, counted after the ")" that ends the command name
# (which may itself contain spaces), are utime and stime in clock ticks.
_UTIME_AFTER_NAME = 11


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` so far, in seconds."""
    return _stat_seconds(Path(f"/proc/{pid}/stat").read_text())


def _stat_seconds(stat: str) -> float:
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[_UTIME_AFTER_NAME]) + int(fields[_UTIME_AFTER_NAME + 1])) / CLOCK_TICKS


def stolen_seconds() -> float:
    """CPU seconds the hypervisor has given this machine's cores to other guests, from ``/proc/stat``."""
    return _stolen_seconds(Path("/proc/stat").read_text())


def _stolen_seconds(stat: str) -> float:
    # The first line sums every core: user nice system idle iowait irq softirq steal ...
    return int(stat.split()[8]) / CLOCK_TICKS


def _status_switches(status: str) -> int:
    return sum(int(line.split()[1]) for line in status.splitlines() if "ctxt_switches:" in line)


def _schedstat_waited(schedstat: str) -> float:
    # /proc/<pid>/task/<tid>/schedstat: ns on a CPU, ns runnable but waiting for one, timeslices.
    return int(schedstat.split()[1]) / 1e9


def _task_figures(task: Path) -> tuple[float, int, float]:
    """CPU seconds, context switches and run-queue seconds of one thread (``/proc/<pid>/task/<tid>``)."""
    return (
        _stat_seconds((task / "stat").read_text()),
        _status_switches((task / "status").read_text()),
        _schedstat_waited((task / "schedstat").read_text()),
    )


def task_totals(pid: int) -> tuple[int, float]:
    """Context switches, and seconds spent runnable but waiting for a core, of every thread of
    ``pid`` so far.

    Each hand-over between a Kafka client thread and the event loop costs at least one switch;
    per request they show how many times the process went to sleep and woke up again. The wait
    is what each wake-up cost in time when the cores were busy: on two shared cores every
    thread a call crosses queues for one.
    """
    switches, waited = 0, 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            _, switched, queued = _task_figures(task)
        except OSError:
            continue  # the thread exited between listing and reading
        switches += switched
        waited += queued
    return switches, waited


def thread_sample(pid: int) -> CpuSample:
    """CPU seconds, context switches and run-queue seconds of each thread of ``pid`` so far, by
    thread name.

    Threads of one name are summed (librdkafka's per-broker threads, a pool). The main
    thread is ``main``; other threads still named after the executable (Python does not
    name its threads for the OS) are told apart by thread id.
    """
    seconds: dict[str, float] = {}
    switches: dict[str, int] = {}
    waited: dict[str, float] = {}
    process_name = Path(f"/proc/{pid}/comm").read_text().strip()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            used, switched, queued = _task_figures(task)
        except OSError:
            continue  # the thread exited between listing and reading
        if task.name == str(pid):
            name = "main"
        elif name == process_name:
            name = f"{name}-{task.name}"
        seconds[name] = seconds.get(name, 0.0) + used
        switches[name] = switches.get(name, 0) + switched
        waited[name] = waited.get(name, 0.0) + queued
    return CpuSample(seconds, switches, waited=waited)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds per process name at one instant."""

    seconds: dict[str, float]
    switches: dict[str, int]
    host_stolen: float = 0.0
    """CPU seconds the hypervisor gave this machine's cores to other guests (steal)."""
    waited: dict[str, float] = field(default_factory=dict)
    """Seconds each process (or thread) was runnable but waited for a core (``schedstat``)."""

    def only(self, names: Collection[str]) -> CpuSample:
        """The same sample restricted to ``names`` (the processes on one target's path)."""
        return CpuSample(
            {name: value for name, value in self.seconds.items() if name in names},
            {name: value for name, value in self.switches.items() if name in names},
            self.host_stolen,
            {name: value for name, value in self.waited.items() if name in names},
        )


class CpuMeter:
    """Samples a fixed set of named processes; a step is the difference of two samples."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)

    def sample(self) -> CpuSample:
        """CPU seconds used so far by each process that is still alive."""
        seconds: dict[str, float] = {}
        switches: dict[str, int] = {}
        waited: dict[str, float] = {}
        for name, pid in self.pids.items():
            try:
                seconds[name] = cpu_seconds(pid)
                switches[name], waited[name] = task_totals(pid)
            except (OSError, ValueError, IndexError):
                continue  # exited: it simply has no figure for this step
        return CpuSample(seconds, switches, stolen_seconds(), waited)

    @staticmethod
    def per_request(before: CpuSample, after: CpuSample, requests: int) -> dict[str, float]:
        """CPU microseconds per request of each process between two samples, plus their total."""
        if requests <= 0:
            return {}
        used = {
            name: (after.seconds[name] - before.seconds[name]) * 1e6 / requests
            for name in after.seconds
            if name in before.seconds
        }
        used["total"] = sum(used.values())
        return {name: round(value, 1) for name, value in used.items()}

    @staticmethod
    def switches_per_request(before: CpuSample, after: CpuSample, requests: int) -> dict[str, float]:
        """Context switches per request of each process between two samples."""
        if requests <= 0:
            return {}
        return {
            name: round((after.switches[name] - before.switches[name]) / requests, 2)
            for name in after.switches
            if name in before.switches
        }

    @staticmethod
    def waited_per_request(before: CpuSample, after: CpuSample, requests: int) -> dict[str, float]:
        """Microseconds per request each process (or thread) was runnable but waited for a core."""
        if requests <= 0:
            return {}
        return {
            name: round((after.waited[name] - before.waited[name]) * 1e6 / requests, 1)
            for name in after.waited
            if name in before.waited
        }

    @staticmethod
    def utilisation(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
        """Share of one core each process used between two samples (1.0 = one core busy)."""
        if seconds <= 0:
            return {}
        return {
            name: round((after.seconds[name] - before.seconds[name]) / seconds, 3)
            for name in after.seconds
            if name in before.seconds
        }

    @staticmethod
    def host(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
        """Cores the hypervisor gave to other guests between two samples (steal): noise, not the system."""
        if seconds <= 0:
            return {}
        return {"steal": round((after.host_stolen - before.host_stolen) / seconds, 3)}

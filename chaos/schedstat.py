"""How long a process's main thread waited for a CPU, from ``/proc/<pid>/schedstat``.

Used to tell, for a call answered late, whether the gateway was descheduled (a starved machine:
two shared cores, JVMs starting) rather than slow by its own logic. The gateway's event loop,
and so its deadline timers, runs on the main thread, which is what ``/proc/<pid>/schedstat``
describes (field 2: nanoseconds spent runnable but waiting on a run queue).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from pathlib import Path

SAMPLE_SECONDS = 0.05


def run_queue_wait(pid: int) -> float | None:
    """Seconds ``pid``'s main thread has spent waiting for a CPU so far; None once it has exited."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class RunQueueWatch:
    """Samples the run-queue wait of some processes every 50 ms while `run` is awaited."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self._times: list[float] = []
        self._waits: list[list[float | None]] = []

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self._times.append(time.perf_counter())
            self._waits.append([run_queue_wait(pid) for pid in self._pids])
            await asyncio.sleep(SAMPLE_SECONDS)  # the sampling interval, not synchronisation

    def waited(self, start: float, end: float, pid: int | None = None) -> float:
        """How long ``pid`` (by default: most any watched process) waited for a CPU between
        ``start`` and ``end`` (perf_counter): between the first and the last sample inside that
        span, so never more than it waited within it (up to two sampling periods less)."""
        first = bisect.bisect_left(self._times, start)
        last = bisect.bisect_right(self._times, end) - 1
        if last <= first:
            return 0.0
        worst = 0.0
        for index in range(len(self._pids)) if pid is None else [self._pids.index(pid)]:
            before, after = self._waits[first][index], self._waits[last][index]
            if before is not None and after is not None:
                worst = max(worst, after - before)
        return worst

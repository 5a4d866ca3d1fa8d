"""Resident memory of processes over time, and its trend: does a long run leak?"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def rss_mib(pid: int) -> float | None:
    """Resident set size of ``pid`` in MiB (``/proc/<pid>/statm``, as ``VmRSS``); None once it has exited."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES / MIB
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Trend:
    """A least-squares line through ``(seconds, MiB)`` samples."""

    slope: float
    """MiB per hour."""
    error: float
    """Standard error of the slope, MiB per hour (samples taken as independent, so a lower bound)."""
    samples: int
    first: float
    """MiB of the first sample fitted."""
    last: float
    """MiB of the last sample fitted."""

    def __str__(self) -> str:
        return (
            f"{self.slope:+.2f} ± {self.error:.2f} MiB/h "
            f"({self.first:.1f} -> {self.last:.1f} MiB, {self.samples} samples)"
        )


def trend(points: Sequence[tuple[float, float]]) -> Trend | None:
    """Fit ``(seconds, MiB)`` points; None under three points (no slope error without them)."""
    if len(points) < 3:
        return None
    count = len(points)
    mean_t = sum(t for t, _ in points) / count
    mean_m = sum(m for _, m in points) / count
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return None
    slope = sum((t - mean_t) * (m - mean_m) for t, m in points) / spread
    residuals = sum((m - mean_m - slope * (t - mean_t)) ** 2 for t, m in points)
    error = math.sqrt(residuals / (count - 2) / spread)
    return Trend(slope * 3600, error * 3600, count, points[0][1], points[-1][1])


def halves(points: Sequence[tuple[float, float]]) -> tuple[Trend | None, Trend | None]:
    """`trend` of the first and of the second half of ``points`` by time.

    A leak grows in both halves. A high-water mark (the heap left larger by the biggest burst
    so far, such as a backlog fetched after a kill) steps once, so one half stays flat, where a
    line through the whole run cannot tell the two apart: one 1.9 MiB step in the middle of
    26 minutes fits as +6.6 MiB/h.
    """
    if not points:
        return None, None
    middle = (points[0][0] + points[-1][0]) / 2
    return trend([p for p in points if p[0] < middle]), trend([p for p in points if p[0] >= middle])


class RssWatch:
    """Samples the RSS of named processes every ``every`` s while `run` is awaited.

    A name maps to a function returning its current pid, so a restarted process starts a new
    series: ``series[(name, pid)]`` is one incarnation's ``(time.perf_counter, MiB)`` samples.
    """

    def __init__(self, processes: Mapping[str, Callable[[], int]], every: float) -> None:
        self._processes = processes
        self._every = every
        self.series: dict[tuple[str, int], list[tuple[float, float]]] = {}

    def sample(self) -> None:
        """One sample of every process that is alive now."""
        now = time.perf_counter()
        for name, pid_of in self._processes.items():
            pid = pid_of()
            mib = rss_mib(pid)
            if mib is not None:
                self.series.setdefault((name, pid), []).append((now, mib))

    async def run(self) -> None:
        """Sample until cancelled."""
        while True:
            self.sample()
            await asyncio.sleep(self._every)  # the sampling interval, not synchronisation

    def incarnations(self, name: str) -> list[list[tuple[float, float]]]:
        """The series of ``name``'s incarnations, oldest first."""
        return [points for (owner, _), points in self.series.items() if owner == name]

"""`Schedule`: the open loop's clock on a thread, handing due requests to the event loop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

from .pingpong import MIN_WAIT_SECONDS

TICK_SECONDS = MIN_WAIT_SECONDS
"""The shortest interval between two wake-ups of the clock: the Kafka floor client's shortest
wait, so that both sweeps' clients wake by one rule."""


class Caller(Protocol):
    """Where due requests are handed: the event loop (``call_soon_threadsafe``)."""

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> object: ...


class Schedule:
    """The open loop's clock, on a thread of its own.

    Event-loop timers (libuv, epoll) have millisecond granularity, so a scheduler on the
    loop sends up to a millisecond late, and that lateness would be charged to every
    latency. ``time.sleep`` on a thread wakes within tens of microseconds; each due
    request then reaches the loop through ``call_soon_threadsafe``, which wakes it at once.

    The clock wakes at most once per ``tick``, the rule the Kafka floor's client follows in
    the same sweeps: below ``1 / tick`` requests a second each leaves on time; above, what
    fell due since the last wake-up leaves together, up to a tick late, and the latency
    includes it. Waking once per request made the generator's own CPU per request three to
    four times its closed-loop figure at thousands a second, taken from the two cores the
    system under test runs on (docs/PERFORMANCE.md, "The load generator's clock").
    """

    def __init__(
        self,
        rate: float,
        start: float,
        count: int,
        first_index: int,
        *,
        tick: float = TICK_SECONDS,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._rate = rate
        self._start = start
        self._count = count
        self._first = first_index
        self._tick = tick
        self._clock = clock
        self._sleep = sleep
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End the schedule early (the run was cancelled)."""
        self._stopped.set()

    def run(self, loop: Caller, deliver: Callable[[tuple[int, float]], None]) -> None:
        """Hand each ``(index, intended time)`` to ``deliver`` on ``loop``, due ones together."""
        scheduled = 0
        woke = -self._tick
        while scheduled < self._count and not self._stopped.is_set():
            wake_at = max(self._start + scheduled / self._rate, woke + self._tick)
            delay = wake_at - self._clock()
            if delay > 0:
                self._sleep(delay)  # the generator's clock, not synchronisation with the system
            # Everything due by now goes in one hand-over: a late wake-up is charged, not hidden.
            woke = self._clock()
            due = min(self._count, int((woke - self._start) * self._rate) + 1)
            batch = [
                (self._first + i, self._start + i / self._rate)
                for i in range(scheduled, max(due, scheduled + 1))
            ]
            scheduled += len(batch)
            loop.call_soon_threadsafe(_deliver_all, deliver, batch)


def _deliver_all(deliver: Callable[[tuple[int, float]], None], batch: list[tuple[int, float]]) -> None:
    for item in batch:
        deliver(item)

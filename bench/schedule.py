"""`Schedule`: the open loop's clock on a thread, handing due requests to the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class Schedule:
    """The open loop's clock, on a thread of its own.

    Event-loop timers (libuv, epoll) have millisecond granularity, so a scheduler on the
    loop sends up to a millisecond late, and that lateness would be charged to every
    latency. ``time.sleep`` on a thread wakes within tens of microseconds; each due
    request then reaches the loop through ``call_soon_threadsafe``, which wakes it at once.
    """

    def __init__(self, rate: float, start: float, count: int, first_index: int) -> None:
        self._rate = rate
        self._start = start
        self._count = count
        self._first = first_index
        self._stopped = threading.Event()

    def stop(self) -> None:
        """End the schedule early (the run was cancelled)."""
        self._stopped.set()

    def run(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[tuple[int, float]], None]) -> None:
        """Hand each request to ``deliver`` on ``loop`` at its intended time."""
        scheduled = 0
        while scheduled < self._count and not self._stopped.is_set():
            intended = self._start + scheduled / self._rate
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the generator's clock, not synchronisation with the system
            # Everything due by now goes in one hand-over: a late wake-up is charged, not hidden.
            due = min(self._count, int((time.perf_counter() - self._start) * self._rate) + 1)
            batch = [
                (self._first + i, self._start + i / self._rate)
                for i in range(scheduled, max(due, scheduled + 1))
            ]
            scheduled += len(batch)
            loop.call_soon_threadsafe(_deliver_all, deliver, batch)


def _deliver_all(deliver: Callable[[tuple[int, float]], None], batch: list[tuple[int, float]]) -> None:
    for item in batch:
        deliver(item)

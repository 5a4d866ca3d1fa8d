"""HTTP/1.1 load generator: open loop (fixed rate, wrk2 method) and closed loop (max throughput).

Raw asyncio streams on uvloop with keep-alive connections and pre-encoded requests, so
the generator costs as little CPU as Python allows. Open-loop latency runs from each
request's *intended* send time, so a stalled server is charged for the requests it
delayed (no coordinated omission). Every body carries a unique nonce that the ``echo``
method must return unchanged: a reply that differs from its request is an error.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import uvloop

from .connection import Connection, ReplyError, header_value
from .latency import Latencies
from .request import RequestTemplate
from .schedule import Schedule
from .stages import Trace
from .step import Step

OK = 200


@dataclass
class _Tally:
    """Counters of the measured window."""

    window_start: float
    window_end: float
    latencies: Latencies = field(default_factory=Latencies)
    lags: Latencies = field(default_factory=Latencies)
    sent: int = 0
    ok: int = 0
    errors: int = 0
    timeouts: int = 0
    last_done: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)

    def measured(self, at: float) -> bool:
        return self.window_start <= at < self.window_end

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


class LoadGenerator:
    """Drives one HTTP endpoint; see the module docstring for the method."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str = "/rpc/echo",
        body_bytes: int = 256,
        timeout: float = 5.0,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.template = RequestTemplate(host, port, path, body_bytes, headers)
        self.timeout = timeout
        self.exchanges = 0
        """Requests completed so far, warm-up included (the denominator of CPU per request)."""
        self._next_index = 0

    async def open_loop(
        self,
        rate: float,
        seconds: float,
        warmup: float,
        connections: int,
        trace: Trace | None = None,
        *,
        on_start: Callable[[float], None] | None = None,
    ) -> Step:
        """Send ``rate`` requests per second; latency from each intended send time.

        ``on_start`` gets the schedule's time zero (`time.perf_counter`, 10 ms ahead) once
        the connections are warm, to start other load in step with this one.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        pool = [Connection(self.host, self.port) for _ in range(connections)]
        await self._warm(pool)
        start = time.perf_counter() + 0.01
        if on_start is not None:
            on_start(start)
        tally = _Tally(start + warmup, start + warmup + seconds)
        workers = [asyncio.create_task(self._serve_queue(conn, queue, tally, trace)) for conn in pool]
        first = self._next_index
        self._next_index += round((warmup + seconds) * rate)
        schedule = Schedule(rate, start, self._next_index - first, first)
        clock = threading.Thread(target=schedule.run, args=(loop, queue.put_nowait), name="bench-schedule")
        clock.start()
        try:
            await asyncio.to_thread(clock.join)
            for _ in workers:
                queue.put_nowait(None)
            await asyncio.gather(*workers)
        finally:
            schedule.stop()
            for task in workers:
                task.cancel()
            for conn in pool:
                conn.close()
        return self._step("open", rate, connections, seconds, tally)

    async def closed_loop(self, connections: int, seconds: float, warmup: float) -> Step:
        """Each connection sends its next request as soon as the last reply arrived."""
        pool = [Connection(self.host, self.port) for _ in range(connections)]
        await self._warm(pool)
        start = time.perf_counter()
        tally = _Tally(start + warmup, start + warmup + seconds)
        try:
            await asyncio.gather(*(self._serve_until(conn, tally) for conn in pool))
        finally:
            for conn in pool:
                conn.close()
        step = self._step("closed", None, connections, seconds, tally)
        step.coordinated_omission = True
        return step

    async def _warm(self, pool: list[Connection]) -> None:
        # Connect (and prove the endpoint answers) before the clock starts.
        await asyncio.gather(*(self._exchange(conn, self._take_index(), None) for conn in pool))

    def _take_index(self) -> int:
        self._next_index += 1
        return self._next_index - 1

    async def _serve_queue(
        self,
        conn: Connection,
        queue: asyncio.Queue[tuple[int, float] | None],
        tally: _Tally,
        trace: Trace | None,
    ) -> None:
        while (item := await queue.get()) is not None:
            index, intended = item
            if tally.measured(intended):
                tally.lags.add(int((time.perf_counter() - intended) * 1e9))
            outcome = await self._exchange(conn, index, trace)
            self._count(tally, intended, outcome)

    async def _serve_until(self, conn: Connection, tally: _Tally) -> None:
        while (sent_at := time.perf_counter()) < tally.window_end:
            outcome = await self._exchange(conn, self._take_index(), None)
            self._count(tally, sent_at, outcome)

    async def _exchange(self, conn: Connection, index: int, trace: Trace | None) -> str:
        """One request; returns ``ok``, ``timeout`` or an error kind."""
        body, request = self.template.build(index)
        self.exchanges += 1
        sent = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                status, head, reply = await conn.exchange(request)
        except TimeoutError:
            conn.close()  # the late response would otherwise answer the next request
            return "timeout"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ReplyError, ValueError):
            conn.close()
            return "connection"
        if trace is not None:
            trace.append(((time.perf_counter() - sent) * 1000, header_value(head, b"server-timing") or b""))
        if status != OK:
            return f"status {status}"
        return "ok" if reply == body else "wrong body"

    @staticmethod
    def _count(tally: _Tally, intended: float, outcome: str) -> None:
        if not tally.measured(intended):
            return
        done = time.perf_counter()
        tally.sent += 1
        tally.last_done = max(tally.last_done, done)
        if outcome == "ok":
            tally.ok += 1
            tally.latencies.add(int((done - intended) * 1e9))
            return
        if outcome == "timeout":
            tally.timeouts += 1
        else:
            tally.errors += 1
        tally.fail(outcome)

    def _step(self, mode: str, rate: float | None, connections: int, seconds: float, tally: _Tally) -> Step:
        # A server that falls behind finishes after the window: the rate is over the longer span.
        span = max(tally.last_done, tally.window_end) - tally.window_start
        step = Step(
            target="",
            mode=mode,
            offered_rate=rate,
            concurrency=connections,
            seconds=seconds,
            sent=tally.sent,
            ok=tally.ok,
            errors=tally.errors,
            timeouts=tally.timeouts,
            achieved_rate=round(tally.ok / span, 1) if span > 0 else 0.0,
            latency_ms=tally.latencies.summary(),
            send_lag_ms=tally.lags.summary(),
        )
        step.notes.extend(f"{count} x {kind}" for kind, count in sorted(tally.failures.items()))
        return step


def connections_for(rate: float) -> int:
    """Pool size for an open loop: comfortably above rate x a bad p99 (50 ms), at least 16."""
    return int(min(256, max(16, rate * 0.05)))


def new_loop() -> asyncio.AbstractEventLoop:
    """The event loop the generator runs on: uvloop, as the gateway's own."""
    return uvloop.new_event_loop()

"""Streamed-reply callers: each reads ``chaos.count`` as Server-Sent Events and keeps what it saw.

Paced like `chaos.load.Load` (``total`` streams at ``rate`` per second, ``concurrency`` callers
round robin over the targets), so streams start spread out and some are always mid-way.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from chaos.load import CONNECTION_ERROR, Outcome
from chaos.sse import EventStream

METHOD = "chaos.count"


@dataclass(frozen=True, slots=True)
class StreamOutcome:
    """One streamed call as its caller saw it (times are `time.perf_counter`)."""

    nonce: str
    target: str
    status: int
    """The response's status; 0 when none came."""
    sent_at: float
    head: float
    """Seconds from sending to the response head (the first part, or the whole answer)."""
    ended_at: float
    ending: str
    """``end`` (complete), ``error`` (an error event), ``answer`` (no stream: an ordinary
    answer such as a 504), ``cut`` (the connection ended without either) or ``hung``."""
    ids: tuple[int, ...] = ()
    """The ``id`` of every part, in the order received."""
    end_parts: int | None = None
    """What the ``end`` event says was sent."""
    problem: int = 0
    """The problem document's status (error event or answer)."""
    detail: str = ""
    """The problem's detail (error event or answer), digits as ``#`` so equal causes group."""
    own: bool = True
    """Every part carried this caller's nonce and its own number."""
    worst_gap: float = 0.0
    """Longest wait between two consecutive events (the head counts as the first)."""
    retry_after: bool = False

    def outcome(self, wait: float) -> Outcome:
        """The caller-side view as an ordinary call (the head is its answer), for `Figures`."""
        own = self.own if 200 <= self.status < 300 else None
        detail = self.detail if self.status >= 400 else ""
        return Outcome(
            self.nonce, self.target, self.status, self.head, wait, own, self.retry_after, self.sent_at, detail
        )


@dataclass
class _Reading:
    """What one caller has seen of its stream so far."""

    ids: list[int] = field(default_factory=list)
    own: bool = True
    end_parts: int | None = None
    problem: int = 0
    detail: str = ""
    worst_gap: float = 0.0


class StreamLoad:
    """``total`` streams of ``n`` parts ``interval`` s apart, ``concurrency`` at once."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        total: int,
        rate: float,
        concurrency: int,
        wait: int,
        n: int,
        interval: float,
        cap: float,
    ) -> None:
        """``cap``: seconds after which a stream still open counts as ``hung`` (and is dropped)."""
        self._targets = targets
        self.total = total
        self._rate = rate
        self._concurrency = concurrency
        self.wait = wait
        self._n = n
        self._interval = interval
        self._cap = cap
        self.outcomes: list[StreamOutcome] = []
        self.loop_lag = 0.0
        """Worst lag of this harness's event loop during the run (its share of any gap)."""
        self._marks: dict[int, asyncio.Event] = {}

    async def reached(self, count: int) -> None:
        """Return once ``count`` streams have ended."""
        if len(self.outcomes) < count:
            await self._marks.setdefault(count, asyncio.Event()).wait()

    async def run(self) -> list[StreamOutcome]:
        """Start every stream at its paced time; returns when all have ended."""
        slots: asyncio.Queue[int | None] = asyncio.Queue()
        monitor = asyncio.create_task(self._watch_loop())
        try:
            async with asyncio.TaskGroup() as group:
                for user in range(self._concurrency):
                    group.create_task(self._user(self._targets[user % len(self._targets)], slots))
                started = time.monotonic()
                for index in range(self.total):
                    await asyncio.sleep(max(0.0, started + index / self._rate - time.monotonic()))
                    slots.put_nowait(index)
                for _ in range(self._concurrency):
                    slots.put_nowait(None)
        finally:
            monitor.cancel()
            for event in self._marks.values():
                event.set()
        return self.outcomes

    async def _watch_loop(self) -> None:
        """How late a 10 ms timer fires: time this process could not read its sockets."""
        while True:  # cancelled when the run ends
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            self.loop_lag = max(self.loop_lag, time.perf_counter() - before - 0.01)

    async def _user(self, target: str, slots: asyncio.Queue[int | None]) -> None:
        while await slots.get() is not None:
            self.outcomes.append(await self._one(target))
            event = self._marks.get(len(self.outcomes))
            if event is not None:
                event.set()

    async def _one(self, target: str) -> StreamOutcome:
        nonce = uuid.uuid4().hex
        body = orjson.dumps({"nonce": nonce, "n": self._n, "interval": self._interval})
        headers = {
            "accept": "text/event-stream",
            "content-type": "application/json",
            "prefer": f"wait={self.wait}",
            "idempotency-key": nonce,
        }
        sent = time.perf_counter()
        reading = _Reading()
        status, head, ending, retry_after = CONNECTION_ERROR, 0.0, "cut", False
        try:
            async with asyncio.timeout(self._cap):
                stream = await EventStream.open(target, f"/rpc/{METHOD}", body, headers)
                try:
                    status, head = stream.status, time.perf_counter() - sent
                    retry_after = "retry-after" in stream.headers
                    if stream.headers.get("content-type", "").startswith("text/event-stream"):
                        ending = await _read(stream, nonce, reading)
                    else:
                        reading.problem, reading.detail = _problem(await stream.body())
                        ending = "answer"
                finally:
                    stream.close()
        except TimeoutError:
            ending = "hung"
        except (OSError, asyncio.IncompleteReadError):
            ending = "cut"
        return StreamOutcome(
            nonce,
            target,
            status,
            sent,
            head,
            time.perf_counter(),
            ending,
            tuple(reading.ids),
            reading.end_parts,
            reading.problem,
            reading.detail,
            reading.own,
            reading.worst_gap,
            retry_after,
        )


async def _read(stream: EventStream, nonce: str, reading: _Reading) -> str:
    """Read events until the terminal one; how the stream ended (``cut`` without one)."""
    last = time.perf_counter()
    async for event in stream.events():
        now = time.perf_counter()
        reading.worst_gap = max(reading.worst_gap, now - last)
        last = now
        if event.kind == "end":
            reading.end_parts = int(orjson.loads(event.data)["parts"])
            return "end"
        if event.kind == "error":
            reading.problem, reading.detail = _problem(event.data)
            return "error"
        part = orjson.loads(event.data)
        reading.own = reading.own and part == {"nonce": nonce, "i": event.id}
        reading.ids.append(event.id if event.id is not None else -1)
    return "cut"


def _problem(body: bytes) -> tuple[int, str]:
    """A problem document's status and detail (digits as ``#``)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 0, "(not problem+json)"
    if not isinstance(document, dict):
        return 0, "(not a problem document)"
    detail = str(document.get("detail", ""))
    status = document.get("status")
    return (status if isinstance(status, int) else 0), "".join("#" if c.isdigit() else c for c in detail)[:90]

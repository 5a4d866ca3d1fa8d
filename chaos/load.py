"""The load: paced HTTP calls with a unique nonce each, at bounded concurrency, all outcomes kept."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from chaos.http import Connection

CONNECTION_ERROR = 0
"""Status recorded when no HTTP answer came (connection refused or reset)."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One HTTP call as the caller saw it."""

    nonce: str
    target: str
    """Base URL of the gateway that was called."""
    status: int
    elapsed: float
    """Seconds from sending the request to the complete response."""
    wait: float
    """The ``Prefer: wait`` deadline the call carried."""
    own_reply: bool | None
    """For 2xx: whether the body carries this call's nonce (False = cross-delivered)."""
    retry_after: bool
    """Whether a ``Retry-After`` header came back."""
    sent_at: float
    """`time.perf_counter` when the request was written."""
    detail: str = ""
    """For error answers: the problem's ``detail`` (digits removed, so equal causes group); for
    `CONNECTION_ERROR`, how the connection failed."""
    harness_lag: float = 0.0
    """Worst stall of the harness's own event loop while this call was open (see `Load.attribute`)."""

    @property
    def past_deadline(self) -> float:
        """How far the answer came after the deadline (negative when before)."""
        return self.elapsed - self.wait

    @property
    def past_deadline_net(self) -> float:
        """`past_deadline` less the time the harness itself could not read the response."""
        return self.past_deadline - self.harness_lag


class Load:
    """Sends ``total`` calls to ``targets`` (round robin) at ``rate`` per second, ``concurrency`` at once."""

    def __init__(
        self,
        targets: Sequence[str],
        *,
        total: int,
        rate: float,
        concurrency: int,
        wait: int,
        method: str = "chaos.echo",
        delay: float = 0.0,
        path: str | None = None,
        late_every: int = 0,
    ) -> None:
        """``path`` defaults to ``/rpc/<method>``; a ``/publish/<topic>`` path sends records instead.

        With ``late_every`` N, every Nth call asks the handler to take ``wait`` + 1 s: its reply
        comes after the caller's 504 (a late reply).
        """
        self._targets = targets
        self.total = total
        self._rate = rate
        self._concurrency = concurrency
        self._wait = wait
        self._path = path or f"/rpc/{method}"
        self._delay = delay
        self._late_every = late_every
        self._finished = False
        self.outcomes: list[Outcome] = []
        self.loop_lag = 0.0
        """Worst event-loop lag of this harness during the run: its own share of response times."""
        self._stalls: list[tuple[float, float]] = []
        """(start, end) of every loop stall over 5 ms, in `time.perf_counter` time."""
        self._marks: dict[int, asyncio.Event] = {}
        self.resent = 0
        """Calls sent again after a kept-alive connection was closed under them (`Connection.resent`)."""

    async def reached(self, count: int) -> None:
        """Return once ``count`` calls have been answered (the fault schedule waits on this)."""
        if len(self.outcomes) >= count:
            return
        await self._marks.setdefault(count, asyncio.Event()).wait()

    def finish(self) -> None:
        """Send no further calls (those already sent are still answered): ends a load early."""
        self._finished = True

    async def run(self) -> list[Outcome]:
        """Send everything; returns when every call is answered."""
        slots: asyncio.Queue[int | None] = asyncio.Queue()
        monitor = asyncio.create_task(self._watch_loop())
        try:
            async with asyncio.TaskGroup() as group:
                for user in range(self._concurrency):
                    group.create_task(self._user(Connection(self._targets[user % len(self._targets)]), slots))
                started = time.monotonic()
                for index in range(self.total):
                    await asyncio.sleep(max(0.0, started + index / self._rate - time.monotonic()))
                    if self._finished:
                        break
                    slots.put_nowait(index)
                for _ in range(self._concurrency):
                    slots.put_nowait(None)
        finally:
            monitor.cancel()
            for event in self._marks.values():
                event.set()
        self.outcomes = [self._attribute(o) for o in self.outcomes]
        return self.outcomes

    def _attribute(self, outcome: Outcome) -> Outcome:
        """Charge a late answer with the loop stalls of this harness that overlap the call."""
        if outcome.past_deadline <= 0:
            return outcome
        end = outcome.sent_at + outcome.elapsed
        lag = sum(
            min(stop, end) - max(start, outcome.sent_at)
            for start, stop in self._stalls
            if start < end and stop > outcome.sent_at
        )
        return dataclasses.replace(outcome, harness_lag=lag)

    async def _user(self, connection: Connection, slots: asyncio.Queue[int | None]) -> None:
        """One virtual user: takes paced slots and calls on its own keep-alive connection."""
        try:
            while (index := await slots.get()) is not None:
                await self._one(connection, index)
        finally:
            connection.close()
            self.resent += connection.resent

    async def _watch_loop(self) -> None:
        """Measure how late a 10 ms timer fires: time this process's loop was too busy to read sockets."""
        while True:  # cancelled when the run ends
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            lag = now - before - 0.01
            self.loop_lag = max(self.loop_lag, lag)
            if lag > 0.005:
                self._stalls.append((now - lag, now))

    async def _one(self, connection: Connection, index: int) -> None:
        nonce = uuid.uuid4().hex
        late = self._late_every > 0 and index % self._late_every == self._late_every - 1
        body = orjson.dumps({"nonce": nonce, "delay": self._wait + 1.0 if late else self._delay})
        headers = {
            "prefer": f"wait={self._wait}",
            "idempotency-key": nonce,
            "content-type": "application/json",
        }
        sent = time.perf_counter()
        failure = ""
        try:
            response = await connection.post(self._path, body, headers)
            status, content, retry_after = response.status, response.body, "retry-after" in response.headers
        except OSError as error:
            status, content, retry_after, failure = CONNECTION_ERROR, b"", False, str(error)
        elapsed = time.perf_counter() - sent
        detail = _problem_detail(content) if status >= 400 else failure
        own = _own_reply(content, nonce) if 200 <= status < 300 and self._path.startswith("/rpc/") else None
        target = f"http://{connection.address}"
        self.outcomes.append(
            Outcome(nonce, target, status, elapsed, float(self._wait), own, retry_after, sent, detail)
        )
        event = self._marks.get(len(self.outcomes))
        if event is not None:
            event.set()


def _problem_detail(content: bytes) -> str:
    try:
        problem = orjson.loads(content)
    except orjson.JSONDecodeError:
        return "(not problem+json)"
    detail = str(problem.get("detail", "")) if isinstance(problem, dict) else ""
    return "".join("#" if c.isdigit() else c for c in detail)[:90]


def _own_reply(content: bytes, nonce: str) -> bool:
    try:
        echoed = orjson.loads(content)
    except orjson.JSONDecodeError:
        return False
    return isinstance(echoed, dict) and echoed.get("nonce") == nonce

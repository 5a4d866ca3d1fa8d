"""`Connections`: the open HTTP connections of one server, bounded in number and in time.

No caller can hold a connection, or the file descriptor under it, for longer than it takes to
send a request at a reasonable pace (`ConnectionLimits`): a head must be complete within the
head timeout, a body must keep arriving, and a kept-alive connection is closed once idle. One
sweep per server checks every connection's deadline a few times per shortest timeout (at most
every second), so no request pays for a timer; a closed connection is counted by reason and
reported in one aggregated log line per `LOG_INTERVAL` at most, never one line per connection.
Requests do not even read the clock: they stamp their waits with the sweep's (`Connections.now`,
as nginx caches its time), so a wait is over one sweep period after its limit, to be never early.

Past `ConnectionLimits.max_connections` a new connection is still read, under the head timeout,
so probes and scrapes are answered as usual while every other request gets a fast 503
(`OverLimit`); past `ConnectionLimits.ceiling` it is answered 503 at once, unread, and closed.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import enum
import logging
from typing import TYPE_CHECKING, Any, Protocol

from . import problems
from .limits import ConnectionLimits
from .metrics import ConnectionMetrics

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
"""Paths answered past the cap: a liveness probe that failed there would restart a healthy pod."""
LOG_INTERVAL = 10.0
"""Seconds between two log lines about closed connections."""
MAX_PERIOD = 1.0
"""Longest interval between two sweeps (seconds); shorter timeouts sweep more often."""
TRIM_AFTER = 1_000
"""Fall in open connections from their peak that makes the sweep hand freed heap back to the system."""


class Admission(enum.Enum):
    """What a new connection may do."""

    SERVED = "served"
    OVER_LIMIT = "over_limit"
    """Past the cap: probes and metrics only (`OverLimit`)."""
    REFUSED = "refused"
    """Past the ceiling: answered 503 and closed, unread."""


class Expiring(Protocol):
    """A connection with deadlines (the gateway's HTTP protocol)."""

    def expire_if_overdue(self, now: float) -> str | None:
        """Close the connection if its current wait is over; the reason, or None if it may go on."""


class Connections:
    """Admission, the deadline sweep, counts and logs for the connections of one server.

    Every method runs on the event loop's thread.
    """

    def __init__(
        self, limits: ConnectionLimits | None = None, metrics: ConnectionMetrics | None = None
    ) -> None:
        self.limits = limits or ConnectionLimits()
        self.metrics = metrics or ConnectionMetrics()
        self.metrics.limit.set(self.limits.max_connections)
        self.metrics.open.set_function(lambda: len(self._open))
        self._open: set[Any] = set()
        self._tracked: set[Expiring] = set()
        self.period = min(
            MAX_PERIOD,
            min(self.limits.head_timeout, self.limits.body_timeout, self.limits.keepalive_timeout) / 4,
        )
        """Seconds between two sweeps."""
        self.now = 0.0
        """Loop time of the last sweep (or of the first connection since sweeps stopped): at most
        one period behind the loop's clock while any connection is open."""
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._unlogged: collections.Counter[str] = collections.Counter()
        self._logged_at = float("-inf")
        self._peak = 0
        self._malloc_trim = _malloc_trim()

    def admit(
        self, connection: Expiring, server_connections: set[Any], loop: asyncio.AbstractEventLoop
    ) -> Admission:
        """Track a new connection; whether it is served, limited to probes, or refused.

        Args:
            connection: the new connection, already in ``server_connections``.
            server_connections: uvicorn's set of the server's open connections, WebSockets
                included (they hold descriptors too), counted against the limits.
            loop: the server's loop, which runs the sweep.
        """
        self._open = server_connections
        count = len(server_connections)
        self._peak = max(self._peak, count)
        if count > self.limits.ceiling:
            self.count("over_ceiling")
            return Admission.REFUSED
        self._tracked.add(connection)
        if self._sweep_handle is None:
            self.now = loop.time()
            self._sweep_handle = loop.call_later(self.period, self._sweep, loop)
        return Admission.SERVED if count <= self.limits.max_connections else Admission.OVER_LIMIT

    def release(self, connection: Expiring) -> None:
        """Stop tracking a connection (closed, or handed over to the WebSocket protocol)."""
        self._tracked.discard(connection)

    def count(self, reason: str) -> None:
        """Count a connection the gateway closed, for the metric and the next log line."""
        self.metrics.closed.labels(reason).inc()
        self._unlogged[reason] += 1

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self.now = now = loop.time()
        for connection in list(self._tracked):
            reason = connection.expire_if_overdue(now)
            if reason is not None:
                self.count(reason)
        if self._unlogged and now - self._logged_at >= LOG_INTERVAL:
            self._report(now)
        if self._peak - len(self._open) >= TRIM_AFTER:
            self._trim()
        # With nothing left to watch, it stops, once the last closes have been reported.
        if self._tracked or self._unlogged:
            self._sweep_handle = loop.call_later(self.period, self._sweep, loop)
        else:
            self._sweep_handle = None

    def _report(self, now: float) -> None:
        closed = dict(self._unlogged)
        self._unlogged.clear()
        self._logged_at = now
        refused = closed.get("over_limit", 0) + closed.get("over_ceiling", 0)
        timed_out = closed.get("head_timeout", 0) + closed.get("body_timeout", 0)
        level = logging.WARNING if refused else logging.INFO if timed_out else logging.DEBUG
        log.log(
            level,
            "closed %d connection(s) since the last report: %s; %d open (limit %d)",
            sum(closed.values()),
            ", ".join(f"{reason} {n}" for reason, n in sorted(closed.items())),
            len(self._open),
            self.limits.max_connections,
            extra={"closed": closed, "open": len(self._open), "limit": self.limits.max_connections},
        )

    def _trim(self) -> None:
        # Closed connections leave their memory in glibc's heaps, which keep it: RSS went from
        # 64 to 100 MiB with 3,000 kept-alive connections and stayed there once they closed;
        # trimmed, it falls to 82 (the rest is Python's own arenas, which new connections reuse).
        self._peak = len(self._open)
        if self._malloc_trim is not None:
            self._malloc_trim(0)


class OverLimit:
    """The ASGI app of a connection past the cap: probes and /metrics as usual, all else 503.

    Either way the connection closes after the answer, so it does not stay past the cap.
    """

    def __init__(self, app: ASGIApp, connections: Connections) -> None:
        self._app = app
        self._connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PROBES:

            async def closing(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                await send(message)

            await self._app(scope, receive, closing)
            return
        limits = self._connections.limits
        self._connections.count("over_limit")
        response = problems.problem(
            503, "Service Unavailable", over_limit_detail(limits), retry_after=limits.retry_after
        )
        response.raw_headers.append((b"connection", b"close"))
        await response(scope, receive, send)


def over_limit_detail(limits: ConnectionLimits) -> str:
    """The ``detail`` of a 503 past the connection cap."""
    return f"the gateway has more than {limits.max_connections} connections open; retry later"


def _malloc_trim() -> Callable[[int], object] | None:
    """glibc's ``malloc_trim``, or None on another C library."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None

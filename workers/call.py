"""`Call`: one request from the moment it is queued until its outcome, and the means to stop it.

The runtime creates one per request record and keeps it by correlation id while the record is
queued or running, so a cancel record can reach it (`Call.cancel`); the dispatcher runs the
handler under a deadline scope it shows the call (`Call.watch`) and arms through `Deadlines`
(`Call.arm`). Everything here runs on the event loop, except `Cancellation` reads from handler
threads.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from workers.cancellation import Cancellation


class Call:
    """One request in this process: whether it was cancelled, and how to end its handler early."""

    __slots__ = (
        "_abandoned",
        "_cancellation",
        "_scope",
        "cancelled",
        "correlation_id",
        "fetched_at",
        "handled",
        "started",
    )

    def __init__(self, correlation_id: str | None = None, fetched_at: float | None = None) -> None:
        self.correlation_id = correlation_id
        """The request's correlation id as read from its headers; None if it has none."""
        self.fetched_at = fetched_at
        """When the consumer thread fetched its record (epoch seconds): the ``worker_fetched`` stamp."""
        self.cancelled = False
        """Whether a cancel record named this request: nobody waits for its answer."""
        self.started = False
        """Whether it has left the queue (its handler runs, or is about to)."""
        self.handled = False
        """Whether its handler is done (its outcome is being published): it holds no slot."""
        self._abandoned = False
        self._cancellation: Cancellation | None = None
        self._scope: asyncio.Timeout | None = None

    @property
    def cancellation(self) -> Cancellation:
        """The flag the handler may take; made on first use, since few handlers declare one."""
        if self._cancellation is None:
            self._cancellation = Cancellation()
            if self._abandoned:
                self._cancellation.set()
        return self._cancellation

    def cancel(self) -> None:
        """Nobody waits any more: set the handler's flag and end its deadline scope now."""
        if self.cancelled:
            return
        self.cancelled = True
        self.abandon()
        self._expire()

    def abandon(self) -> None:
        """The handler's answer will be dropped (deadline, cancel, shutdown): set its flag."""
        self._abandoned = True
        if self._cancellation is not None:
            self._cancellation.set()

    def watch(self, scope: asyncio.Timeout | None) -> None:
        """The deadline scope the handler runs in, None once it has left it; a cancel expires it."""
        self._scope = scope
        if self.cancelled:
            self._expire()

    def arm(self, when: float) -> None:
        """Give the scope the handler still runs in its deadline (loop time), unless a cancel has
        set one already (`workers.deadlines`)."""
        scope = self._scope
        if scope is not None and scope.when() is None:
            scope.reschedule(when)

    def watching(self, scope: asyncio.Timeout) -> _Watching:
        """`watch` ``scope`` for a ``with`` block: the handler runs in it, and a cancel expires it."""
        self.watch(scope)
        return _Watching(self)

    def _expire(self) -> None:
        # A cancel is a deadline of now: the deadline's path stops the handler (asyncio cancellation,
        # or no more waiting for its thread), and `cancelled` tells the dispatcher which it was.
        scope = self._scope
        if scope is not None and not scope.expired():
            scope.reschedule(asyncio.get_running_loop().time())


class _Watching:
    """The block of `Call.watching`; a class, not ``@contextmanager``: it runs for every request,
    and a generator-based manager costs four times as much (about 2 µs against 0.5)."""

    __slots__ = ("_call",)

    def __init__(self, call: Call) -> None:
        self._call = call

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._call.watch(None)

"""`PendingReplies`: the bounded correlation-id -> future map. No Kafka in here.

Used only from the event loop thread, so it needs no lock.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class PendingFullError(Exception):
    """The map holds ``capacity`` entries; the caller should shed the request."""


class PendingReplies(Generic[T]):
    """Futures of requests waiting for their reply, keyed by correlation id."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._futures: dict[str, asyncio.Future[T]] = {}
        self._emptied = asyncio.Event()
        self._emptied.set()

    def __len__(self) -> int:
        return len(self._futures)

    def __contains__(self, correlation_id: object) -> bool:
        return correlation_id in self._futures

    def register(self, correlation_id: str) -> asyncio.Future[T]:
        """A new future for ``correlation_id``; register it before producing the request.

        Raises:
            PendingFullError: the map is at capacity.
            KeyError: the id is already pending (ids are random, so this is a bug).
        """
        if len(self._futures) >= self.capacity:
            raise PendingFullError(f"{len(self._futures)} requests already pending")
        if correlation_id in self._futures:
            raise KeyError(correlation_id)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._futures[correlation_id] = future
        self._emptied.clear()
        return future

    def resolve(self, correlation_id: str, result: T) -> bool:
        """Complete the waiter for ``correlation_id``; False when nobody waits for it."""
        future = self._futures.get(correlation_id)
        if future is None or future.done():
            return False
        future.set_result(result)
        return True

    def fail(self, correlation_id: str, error: BaseException) -> bool:
        """Fail the waiter for ``correlation_id``; False when nobody waits for it."""
        future = self._futures.get(correlation_id)
        if future is None or future.done():
            return False
        future.set_exception(error)
        return True

    def discard(self, correlation_id: str) -> None:
        """Forget ``correlation_id``; the waiter calls this on every exit path."""
        future = self._futures.pop(correlation_id, None)
        if future is not None and not future.done():
            future.cancel()
        if not self._futures:
            self._emptied.set()

    async def emptied(self) -> None:
        """Return once no request is pending (used to drain at shutdown)."""
        await self._emptied.wait()

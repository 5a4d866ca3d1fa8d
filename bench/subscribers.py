"""`Subscribers`: thousands of Server-Sent Events connections to one gateway topic, in one process.

Each connection is a bare `asyncio.Protocol` (`Subscriber`): no HTTP library and no stream
reader, because at 10,000 connections the client's own cost per received event decides
how late the last subscriber sees a record. ``data_received`` undoes the chunked transfer
coding, splits Server-Sent Events and stamps each record with the host's monotonic clock
(``CLOCK_MONOTONIC``, shared by every process on the host, so a producer elsewhere can
stamp the other end) the moment the bytes that complete it arrive.

Records are expected to carry ``{"seq": n, "produced_ns": t}`` as their value (text, so
the gateway sends it as ``value``).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Callable
from typing import cast

import orjson

STATUS_OK = b"HTTP/1.1 200 "
PREAMBLE = b": streaming "
OVERFLOW = b"event: overflow"
DATA = b"data: "


class SubscriberError(Exception):
    """A subscriber could not start streaming (refused, answered something else, or closed)."""


class Arrivals:
    """When each record reached each subscriber; wakes a waiter once a record reached them all."""

    def __init__(self, subscribers: int) -> None:
        self.expected = subscribers
        """Subscribers still streaming: a record that reached this many has reached everyone."""
        self.times: dict[int, array[int]] = {}
        """Monotonic nanoseconds of each arrival, by record ``seq``, in arrival order."""
        self.produced: dict[int, int] = {}
        """Monotonic nanoseconds each record was stamped with by its producer."""
        self._waiters: dict[int, asyncio.Future[None]] = {}

    def add(self, seq: int, produced_ns: int, at_ns: int) -> None:
        """One subscriber received record ``seq``."""
        times = self.times.get(seq)
        if times is None:
            times = self.times[seq] = array("q")
            self.produced[seq] = produced_ns
        times.append(at_ns)
        if len(times) >= self.expected:
            self._settle(seq)

    def lost(self) -> None:
        """A subscriber stopped streaming: records wait for one fewer."""
        self.expected -= 1
        for seq in list(self._waiters):
            if len(self.times.get(seq, ())) >= self.expected:
                self._settle(seq)

    async def everywhere(self, seq: int) -> None:
        """Wait until record ``seq`` reached every subscriber still streaming."""
        if len(self.times.get(seq, ())) >= self.expected:
            return
        waiter = self._waiters[seq] = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiters.pop(seq, None)

    def _settle(self, seq: int) -> None:
        waiter = self._waiters.get(seq)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Subscriber(asyncio.Protocol):
    """One ``GET /stream/{topic}``: chunked transfer coding and SSE parsed as bytes arrive."""

    def __init__(self, request: bytes, arrivals: Arrivals, ready: asyncio.Future[None]) -> None:
        self._request = request
        self._arrivals = arrivals
        self.ready = ready
        """Settled once the ``: streaming`` preamble arrived (the gateway has subscribed us)."""
        self._transport: asyncio.Transport | None = None
        self._raw = bytearray()
        self._body = bytearray()
        self._in_head = True
        self._chunk_size = -1  # -1: the next thing in _raw is a chunk-size line
        self._closing = False
        self.seqs: list[int] = []
        """``seq`` of every record received, in order."""
        self.keepalives = 0
        self.overflowed = False
        """The gateway cut this subscriber off as too slow (``event: overflow``)."""
        self.lost_early = False
        """The stream ended or the connection closed before the bench closed it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not derive from asyncio.Transport; they implement it.
        self._transport = cast("asyncio.Transport", transport)
        self._transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        if self.lost_early:
            return  # ended (or refused): whatever follows is not a record
        raw = self._raw
        raw += data
        if self._in_head:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).lower()
            del raw[: end + 4]
            self._in_head = False
            if not head.startswith(STATUS_OK.lower()) or b"transfer-encoding: chunked" not in head:
                self._fail(f"not a chunked 200 stream: {head[:200]!r}")
                return
        last = False
        while not last:
            if self._chunk_size < 0:
                end = raw.find(b"\r\n")
                if end < 0:
                    break
                self._chunk_size = int(raw[:end], 16)
                del raw[: end + 2]
                last = self._chunk_size == 0  # the stream ended; its trailer is not needed
            if len(raw) < self._chunk_size + 2:  # the chunk and its CRLF
                break
            self._body += raw[: self._chunk_size]
            del raw[: self._chunk_size + 2]
            self._chunk_size = -1
        self._events(now)
        if last:
            self._ended()

    def _events(self, now: int) -> None:
        body = self._body
        while (end := body.find(b"\n\n")) >= 0:
            event = bytes(body[:end])
            del body[: end + 2]
            if event.startswith(b":"):
                if event.startswith(PREAMBLE) and not self.ready.done():
                    self.ready.set_result(None)
                else:
                    self.keepalives += 1
            elif event.startswith(OVERFLOW):
                self.overflowed = True
            else:
                document = orjson.loads(event[event.index(DATA) + len(DATA) :])
                value = orjson.loads(document["value"])
                self.seqs.append(value["seq"])
                self._arrivals.add(value["seq"], value["produced_ns"], now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closing:
            self._ended()
        if not self.ready.done():
            self.ready.set_exception(SubscriberError(f"connection closed before streaming: {exc}"))

    def close(self) -> None:
        """Hang up (the bench is done with this subscriber)."""
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    def _ended(self) -> None:
        if not self.lost_early:
            self.lost_early = True
            self._arrivals.lost()

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(SubscriberError(reason))
        self._ended()
        self.close()


class Subscribers:
    """``count`` subscribers of one topic, opened in batches, each streaming before the next batch."""

    def __init__(self, host: str, port: int, topic: str, count: int) -> None:
        self.host = host
        self.port = port
        self.count = count
        self.arrivals = Arrivals(count)
        self.members: list[Subscriber] = []
        """Every subscriber opened so far, streaming or not (all are hung up by `close`)."""
        self.streaming = 0
        self._request = (
            f"GET /stream/{topic} HTTP/1.1\r\nhost: {host}:{port}\r\naccept: text/event-stream\r\n\r\n"
        ).encode()

    async def open(
        self, batch: int, batch_seconds: float, progress: Callable[[int], None] | None = None
    ) -> None:
        """Open every subscriber, ``batch`` at a time (so the gateway's listen backlog never overflows).

        Raises:
            SubscriberError: one was refused, or a batch was not streaming within ``batch_seconds``,
                naming how many were streaming by then.
        """
        while self.streaming < self.count:
            size = min(batch, self.count - self.streaming)
            try:
                async with asyncio.timeout(batch_seconds):
                    await asyncio.gather(*(self._open_one() for _ in range(size)))
            except (OSError, TimeoutError, SubscriberError) as error:
                raise SubscriberError(
                    f"{self.streaming} subscribers were streaming when the next batch of {size} "
                    f"failed: {error!r}"
                ) from error
            self.streaming += size
            if progress is not None:
                progress(self.streaming)

    async def _open_one(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def subscriber() -> Subscriber:
            self.members.append(Subscriber(self._request, self.arrivals, ready))
            return self.members[-1]

        await loop.create_connection(subscriber, self.host, self.port)
        await ready

    def close(self) -> None:
        """Hang up every subscriber."""
        for subscriber in self.members:
            subscriber.close()

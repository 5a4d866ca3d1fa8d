"""Streamed replies: the parts after the first, checked and buffered, and how callers read them.

A worker answers a streaming method with part records numbered 0, 1, 2, ... and an end
record (``rpc-final``; docs/PROTOCOL.md). The first record resolves the request's future
like a whole reply; `ReplyRouter` then gives every later record of that correlation id to
its `PartStream`, which checks the numbering (a gap or a duplicate breaks the stream: the
caller gets an error, never silently missing data) and holds at most ``limit`` parts for a
slow reader, not counting those of the batch being routed (past it the stream breaks too, so
memory stays bounded by ``limit`` plus one fetch batch). Parts of the current batch are
exempt because a worker may burst: the reader has had no chance to take them yet, while
those of earlier batches are still there only if the caller reads more slowly than they come.

`PartFormat` writes parts for the caller: Server-Sent Events when it accepts
``text/event-stream`` (one event per part, ``id:`` the sequence number, then an ``end`` or
``error`` event), else newline-delimited JSON for JSON parts (an error is a last line
``{"error": <problem>}``), else the bodies as they are.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from kafkarpc import protocol

from . import problems


class StreamBroken(Exception):
    """The stream cannot go on; ``reason`` is a `protocol.CancelReason` value."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class PartStream:
    """The parts of one streamed reply that follow the first; used on the event loop only.

    Args:
        first: The record that resolved the request (its sequence sets the expected next).
        limit: Parts held for the reader; one more breaks the stream (``stream-overflow``).
        closed: Called once when the stream is closed (the router forgets it).
    """

    def __init__(self, first: protocol.Reply, limit: int, closed: Callable[[], None]) -> None:
        self._expected = (first.sequence or 0) + 1
        self._limit = limit
        self._closed = closed
        self._parts: deque[protocol.Reply] = deque()
        self._fresh = 0
        """Parts pushed since the router last called `settle` (the batch being routed)."""
        self._waiter: asyncio.Future[None] | None = None
        self.broken: StreamBroken | None = None
        """Why the stream cannot go on, once it cannot."""
        self.done = False
        """Whether the stream was closed (it takes no more parts)."""
        if first.sequence != 0:
            self.broken = StreamBroken(
                protocol.CancelReason.STREAM_BROKEN, f"the stream began with part {first.sequence}, not 0"
            )

    def push(self, part: protocol.Reply) -> None:
        """A record of this stream from the reply topic (router)."""
        if self.done or self.broken is not None:
            return
        if part.sequence != self._expected:
            what = "came twice" if (part.sequence or 0) < self._expected else "is missing"
            missing = part.sequence if what == "came twice" else self._expected
            # The parts before the fault are good: the reader still gets them, then the error.
            self._break(
                protocol.CancelReason.STREAM_BROKEN, f"part {missing} of the stream {what}", keep=True
            )
        elif len(self._parts) - self._fresh >= self._limit:
            self._break(
                protocol.CancelReason.STREAM_OVERFLOW,
                f"the caller read too slowly: {self._limit} parts were waiting",
            )
        else:
            self._expected += 1
            self._fresh += 1
            self._parts.append(part)
            self._wake()

    def settle(self) -> None:
        """The router's batch is routed: the parts pushed so far count against the limit."""
        self._fresh = 0

    async def next(self) -> protocol.Reply:
        """The next record (the last one has ``final`` set).

        Raises:
            StreamBroken: a part went missing or came twice, or the buffer overflowed.
        """
        while not self._parts:
            if self.broken is not None:
                raise self.broken
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._parts.popleft()

    def close(self) -> None:
        """Stop taking parts and let the router forget the stream; idempotent."""
        if not self.done:
            self.done = True
            self._closed()

    def interrupt(self, reason: str, detail: str) -> None:
        """Break the stream from outside (the caller left): the reader's `next` raises at once."""
        if self.broken is None:
            self._break(reason, detail)

    def _break(self, reason: str, detail: str, *, keep: bool = False) -> None:
        self.broken = StreamBroken(reason, detail)
        if not keep:
            self._parts.clear()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class PartFormat:
    """How a streamed reply is written to the caller."""

    content_type: bytes
    kind: str
    """``sse``, ``ndjson`` or ``raw``."""

    @classmethod
    def choose(cls, event_stream: bool, first: protocol.Reply) -> PartFormat:
        """SSE when the caller accepts it, NDJSON for JSON parts, else the parts' own type."""
        if event_stream:
            return cls(b"text/event-stream; charset=utf-8", "sse")
        if first.content_type.split(";", 1)[0].strip().lower() == "application/json":
            return cls(b"application/x-ndjson", "ndjson")
        return cls(first.content_type.encode(), "raw")

    def part(self, part: protocol.Reply) -> bytes:
        """One part as the caller reads it."""
        if self.kind == "sse":
            lines = part.body.decode("utf-8", "replace").splitlines() or [""]
            data = "".join(f"data: {line}\n" for line in lines)
            return f"id: {part.sequence}\n{data}\n".encode()
        if self.kind == "ndjson":
            body = part.body
            try:
                document = orjson.loads(body)
            except orjson.JSONDecodeError:  # not JSON after all: carried as one JSON string
                return orjson.dumps(body.decode("utf-8", "replace")) + b"\n"
            if b"\n" in body or b"\r" in body:  # pretty-printed JSON would split across lines
                body = orjson.dumps(document)
            return body + b"\n"
        return part.body

    def end(self, parts: int) -> bytes:
        """What closes a complete stream."""
        if self.kind == "sse":
            return b'event: end\ndata: {"parts": %d}\n\n' % parts
        return b""

    def whole(self, parts: list[protocol.Reply]) -> bytes | None:
        """A complete stream, its parts then its end record, as one body; None when the stream
        failed and this format cannot say so (raw parts)."""
        *data, end = parts
        body = b"".join(self.part(part) for part in data)
        if not end.is_error:
            return body + self.end(len(data))
        ending = self.error(end_problem(end))
        return body + ending if ending else None

    def error(self, problem: bytes) -> bytes:
        """What closes a stream that failed: the problem document, where the format can carry it."""
        if self.kind == "sse":
            return b"event: error\ndata: " + problem + b"\n\n"
        if self.kind == "ndjson":
            return b'{"error": ' + problem + b"}\n"
        return b""


def end_problem(end: protocol.Reply) -> bytes:
    """The problem document closing a stream whose worker failed after it began, on one line: the
    worker's own for a 4xx, the gateway's 502 for anything else (as for a whole reply)."""
    if end.status >= 500 or end.status < 400:
        error = problems.worker_error(end)
        return protocol.problem_body(
            error.status,
            error.title,
            error.detail,
            correlation_id=end.correlation_id,
            worker_status=end.status,
        )
    try:
        document = orjson.loads(end.body)
    except orjson.JSONDecodeError:
        document = None
    if isinstance(document, dict):
        return orjson.dumps(document)
    return protocol.problem_body(end.status, "Error", f"the worker ended the stream with status {end.status}")

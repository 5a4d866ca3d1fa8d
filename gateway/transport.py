"""`CoalescingTransport`: what one loop iteration writes to a connection leaves in one send().

uvicorn writes a response's status line and headers, then its body, with two
``transport.write`` calls, and uvloop sends each at once: two ``send()`` system calls,
and with ``TCP_NODELAY`` two segments the caller wakes up for. Those two writes were
12 % of the gateway's event-loop samples (docs/PERFORMANCE.md). Writes made during one
iteration are gathered here and flushed together at the start of the next, which
costs a scheduled callback instead of a system call and a segment.

Back-pressure is kept: once `FLUSH_BYTES` are queued they are written at once, so the
socket transport can pause the writer (uvicorn's flow control) as it did before, and a
streaming response never piles up more than that here.
"""

from __future__ import annotations

import asyncio
from typing import Any

FLUSH_BYTES = 65_536
"""Queued bytes that are written at once: uvicorn's own high-water mark for pausing the writer
(``HIGH_WATER_LIMIT``, in a module of uvicorn's that is not public API; test_uvicorn_seam pins it)."""


class CoalescingTransport(asyncio.Transport):
    """Wraps a connection's transport; everything but ``write`` and ``close`` passes through."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.raw = transport
        """The wrapped transport (handed over as is when the connection is upgraded)."""
        self._loop = loop
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._direct = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; the first write of an iteration schedules the flush."""
        if self._direct:
            self.raw.write(data)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is queued, in one write (``writelines``: no copy of large bodies)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if self.raw.is_closing():
            return
        if len(pending) == 1:
            self.raw.write(pending[0])
        else:
            self.raw.writelines(pending)

    def write_through(self) -> None:
        """Flush, then write at once from now on (the connection has been handed over)."""
        self.flush()
        self._direct = True

    def close(self) -> None:
        """Flush, then close (the transport sends what it holds before closing)."""
        self.flush()
        self.raw.close()

    def write_eof(self) -> None:
        """Flush, then half-close: the caller reads everything written, then end of stream."""
        self.flush()
        self.raw.write_eof()

    def can_write_eof(self) -> bool:
        return self.raw.can_write_eof()

    def abort(self) -> None:
        self._pending.clear()
        self._pending_bytes = 0
        self.raw.abort()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self.raw.pause_reading()

    def resume_reading(self) -> None:
        self.raw.resume_reading()

    def is_reading(self) -> bool:
        return self.raw.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.raw.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.raw.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self.raw.get_write_buffer_size() + self._pending_bytes

"""`Connection`: one keep-alive HTTP/1.1 connection on raw asyncio streams.

Only what the load generator needs: a fixed request out, status and body back (the
servers under test always send ``content-length``). No HTTP library on the hot path.
"""

from __future__ import annotations

import asyncio

CLOSE = b"\r\nconnection: close"


def header_value(head: bytes, name: bytes) -> bytes | None:
    """The value of header ``name`` (lowercase) in a raw response head, or None."""
    marker = b"\r\n" + name + b":"
    start = head.lower().find(marker)
    if start < 0:
        return None
    start += len(marker)
    return head[start : head.index(b"\r\n", start)].strip()


class ReplyError(Exception):
    """The server answered something other than the echo of our request."""


class Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, request: bytes) -> tuple[int, bytes, bytes]:
        """Send ``request``; return the response status, head and body (reconnecting if needed).

        The head (status line and headers, raw) is returned as read, for callers that need
        a header; parsing it is theirs, so the load generator's hot path pays nothing.
        """
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = header_value(head, b"content-length")
        if length is None:
            raise ReplyError("no content-length in the response")
        body = await self._reader.readexactly(int(length))
        if CLOSE in head.lower():
            self.close()
        return status, head, body

    @property
    def connected(self) -> bool:
        """Whether a connection is open (the next exchange reuses it)."""
        return self._writer is not None

    def close(self) -> None:
        """Drop the connection; the next exchange opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

"""`Connection`: one keep-alive HTTP/1.1 connection on raw asyncio streams.

Only what the load generator needs: a fixed request out, status and body back (the
servers under test always send ``content-length``). No HTTP library on the hot path.
"""

from __future__ import annotations

import asyncio

CONTENT_LENGTH = b"\r\ncontent-length:"
CLOSE = b"\r\nconnection: close"


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
        lowered = head.lower()
        status = int(head[9:12])
        start = lowered.find(CONTENT_LENGTH)
        if start < 0:
            raise ReplyError("no content-length in the response")
        start += len(CONTENT_LENGTH)
        length = int(lowered[start : lowered.index(b"\r\n", start)])
        body = await self._reader.readexactly(length)
        if CLOSE in lowered:
            self.close()
        return status, head, body

    def close(self) -> None:
        """Drop the connection; the next exchange opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

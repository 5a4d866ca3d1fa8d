"""One POST read as Server-Sent Events on raw asyncio streams, event by event as it arrives.

Like `chaos.http`, no HTTP library: dozens of streams of ten parts a second share two cores
with the system under test, and every millisecond the harness spends parsing is a gap between
parts the gateway did not cause. One connection per stream (``connection: close``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from chaos.http import parse_headers


@dataclass(frozen=True, slots=True)
class Event:
    """One event: ``message`` (a part, with its ``id``), ``end`` or ``error``."""

    kind: str
    id: int | None
    data: bytes


class EventStream:
    """The response to one POST: its status and head, then its body or its events."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self.status = int(head[9:12])
        self.headers = parse_headers(head)
        """Lower-cased names."""

    @classmethod
    async def open(cls, base_url: str, path: str, body: bytes, headers: dict[str, str]) -> EventStream:
        """Send the POST and read the response head.

        Raises:
            OSError, asyncio.IncompleteReadError: no head came (refused, reset, closed).
        """
        parts = urlsplit(base_url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        reader, writer = await asyncio.open_connection(host, port)
        try:
            lines = [f"POST {path} HTTP/1.1", f"host: {host}:{port}", f"content-length: {len(body)}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            lines.append("connection: close")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            head = await reader.readuntil(b"\r\n\r\n")
        except BaseException:
            writer.close()
            raise
        return cls(reader, writer, head)

    async def body(self) -> bytes:
        """The whole body (an ordinary answer, such as a problem document)."""
        return b"".join([chunk async for chunk in self._chunks()])

    async def events(self) -> AsyncIterator[Event]:
        """Each event as soon as its blank line arrives.

        Raises:
            OSError, asyncio.IncompleteReadError: the connection ended mid-event or mid-chunk.
        """
        buffer = b""
        async for chunk in self._chunks():
            buffer += chunk
            while b"\n\n" in buffer:
                block, buffer = buffer.split(b"\n\n", 1)
                yield _event(block)
        if buffer.strip():
            raise asyncio.IncompleteReadError(buffer, None)

    def close(self) -> None:
        """Drop the connection."""
        self._writer.close()

    async def _chunks(self) -> AsyncIterator[bytes]:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")  # the (empty) trailer section
                    return
                yield (await self._reader.readexactly(size + 2))[:-2]
        elif "content-length" in self.headers:
            yield await self._reader.readexactly(int(self.headers["content-length"]))
        else:
            yield await self._reader.read()  # delimited by the close


def _event(block: bytes) -> Event:
    kind, ident, data = "message", None, []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"event":
            kind = value.decode()
        elif name == b"id":
            ident = int(value)
        elif name == b"data":
            data.append(value)
    return Event(kind, ident, b"\n".join(data))

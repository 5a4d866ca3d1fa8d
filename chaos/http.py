"""A lean HTTP/1.1 keep-alive client on asyncio streams, so the load generator is not the bottleneck.

httpx costs about a millisecond of CPU per call in its connection pool; on two shared cores at
hundreds of calls per second that made the harness, not the gateway, the slowest part (its own
event loop lagged by 600 ms). One `Connection` per virtual user, one request at a time on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status, lower-cased headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive connection to ``base_url``; reconnects when the server closed it."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self.address = f"{self._host}:{self._port}"
        """``host:port`` of the server."""
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> HttpResponse:
        """Send one POST; raises OSError or `asyncio.IncompleteReadError` when the connection fails."""
        return await self.raw(path, body, list(headers.items()))

    async def raw(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> HttpResponse:
        """POST with headers exactly as given: repeated names and any case are kept."""
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        lines = [f"POST {path} HTTP/1.1", f"host: {self._host}:{self._port}", f"content-length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            response = await _read_response(reader)
        except BaseException:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def _read_response(reader: asyncio.StreamReader) -> HttpResponse:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in head[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body = await _read_chunked(reader)
    else:
        body = b""
    return HttpResponse(status, headers, body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        chunk = await reader.readexactly(size + 2)
        if size == 0:
            return b"".join(chunks)
        chunks.append(chunk[:-2])

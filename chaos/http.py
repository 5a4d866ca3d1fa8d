"""A lean HTTP/1.1 keep-alive client on asyncio streams, so the load generator is not the bottleneck.

httpx costs about a millisecond of CPU per call in its connection pool; on two shared cores at
hundreds of calls per second that made the harness, not the gateway, the slowest part (its own
event loop lagged by 600 ms). One `Connection` per virtual user, one request at a time on it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.connection import Connection as BenchConnection
from bench.connection import ReplyError


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status, lower-cased headers and body."""

    status: int
    headers: dict[str, str]
    body: bytes


class NoAnswer(OSError):
    """No HTTP answer came; the message says how, and whether the connection was new or kept alive."""


class Connection:
    """One keep-alive connection to ``base_url`` (`bench.connection.Connection` underneath)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        self.address = f"{host}:{port}"
        """``host:port`` of the server."""
        self._connection = BenchConnection(host, port)
        self.resent = 0
        """Requests sent again on a new connection because a kept-alive one was closed under them."""

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> HttpResponse:
        """Send one POST; raises `NoAnswer` (an OSError) when no answer came."""
        return await self.raw(path, body, list(headers.items()))

    async def raw(self, path: str, body: bytes, headers: list[tuple[str, str]]) -> HttpResponse:
        """POST with headers exactly as given: repeated names and any case are kept."""
        lines = [f"POST {path} HTTP/1.1", f"host: {self.address}", f"content-length: {len(body)}"]
        lines.extend(f"{name}: {value}" for name, value in headers)
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        while True:  # at most twice: a resend goes out on a new connection, which is never stale
            kept_alive = self._connection.connected
            try:
                status, head, content = await self._connection.exchange(request)
            except ReplyError as error:
                self.close()
                raise OSError(str(error)) from error
            except (OSError, asyncio.IncompleteReadError) as error:
                self.close()
                stale = isinstance(error, asyncio.IncompleteReadError) and not error.partial
                if kept_alive and stale:
                    # The server closed the idle connection as the request went out (the keep-alive
                    # race: the gateway closes connections idle for 5 s): it read none of it, so it
                    # is sent again on a new connection, as HTTP clients do (RFC 9112 9.3.1).
                    self.resent += 1
                    continue
                # Kept alive or new tells a stale keep-alive connection from a server that is gone.
                connection = "kept-alive" if kept_alive else "new"
                raise NoAnswer(f"{type(error).__name__} on a {connection} connection") from error
            except BaseException:
                self.close()
                raise
            return HttpResponse(status, parse_headers(head), content)

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""
        self._connection.close()


def parse_headers(head: bytes) -> dict[str, str]:
    """The header fields of a response head (status line skipped), names lower-cased."""
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return headers

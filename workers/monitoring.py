"""A tiny HTTP listener for Prometheus and Kubernetes: /metrics, /healthz, /readyz.

Deliberately minimal (GET only, one response per connection): it serves probes and scrapes,
not users, and keeps the worker free of a web framework.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# A probe or scrape that has not sent its request head by then is dropped.
READ_TIMEOUT = 5.0
# Request heads larger than this are refused; probes send a few hundred bytes.
MAX_HEAD = 8192


class MonitoringServer:
    """Serves metrics, liveness and readiness on one port."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
    ) -> None:
        self._host = host
        self._port = port
        self._registry = registry
        self._healthy = healthy
        self._ready = ready
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (useful when configured as 0)."""
        if self._server is None:
            raise RuntimeError("monitoring server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Bind and start serving."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD)
        log.info("monitoring listening", extra={"host": self._host, "port": self.port})

    async def stop(self) -> None:
        """Stop serving; idempotent."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = self._route(head.split(b"\r\n", 1)[0])
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        try:
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    def _route(self, request_line: bytes) -> tuple[str, str, bytes]:
        parts = request_line.split(b" ")
        if len(parts) != 3 or parts[0] != b"GET":
            return "405 Method Not Allowed", "text/plain", b"method not allowed\n"
        path = parts[1].split(b"?", 1)[0]
        if path == b"/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self._registry)
        if path == b"/healthz":
            return _probe(self._healthy())
        if path == b"/readyz":
            return _probe(self._ready())
        return "404 Not Found", "text/plain", b"not found\n"


def _probe(ok: bool) -> tuple[str, str, bytes]:
    return (
        ("200 OK", "text/plain", b"ok\n")
        if ok
        else ("503 Service Unavailable", "text/plain", b"unavailable\n")
    )

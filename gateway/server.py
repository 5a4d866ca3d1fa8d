"""The HTTP server: uvicorn tuned for the gateway, draining on the first signal.

The gateway's HTTP protocol is uvicorn's httptools protocol with three additions:

* A head limit. uvicorn caps the request line and headers only in its h11 mode; with
  httptools a caller could send megabytes of headers and the gateway would hold them
  all. The head is counted while httptools parses it and, past the limit, answered
  with 431 and a problem document before the app sees anything.
* One send() per response, through `CoalescingTransport`.
* A connection-closed future in each request's scope (`CONNECTION_CLOSED`), so the RPC
  endpoint learns of a caller leaving from a callback instead of a task per request
  waiting in ``receive()``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kafkarpc import protocol

from .transport import CoalescingTransport

if TYPE_CHECKING:
    from types import FrameType

    from fastapi import FastAPI

    from .settings import GatewaySettings

CONNECTION_CLOSED = "rpcgw.connection_closed"
"""ASGI extension: ``scope["extensions"][CONNECTION_CLOSED]["future"]`` is done once the caller's
connection closes."""

# Per header line: ": " and CRLF around the name and value httptools hands over.
_LINE_OVERHEAD = 4


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; httptools reports it as a parse error."""


def gateway_http_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """The gateway's `HttpToolsProtocol` class (see the module docstring)."""

    class GatewayHttpProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _too_large = False
        _closed: asyncio.Future[None]
        _coalescing: CoalescingTransport

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._closed = self.loop.create_future()
            self._coalescing = CoalescingTransport(transport, self.loop)
            super().connection_made(self._coalescing)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if not self._closed.done():
                self._closed.set_result(None)

        def eof_received(self) -> None:
            # uvloop closes the socket on EOF itself, past the wrapper: send what is queued first
            # (a caller that half-closes after its request still gets the answer).
            self._coalescing.flush()
            super().eof_received()

        def handle_websocket_upgrade(self) -> None:
            # The WebSocket protocol takes the connection over with the socket's own transport;
            # a pipelined request still running before it writes through, in order.
            self._coalescing.write_through()
            self.transport = self._coalescing.raw
            super().handle_websocket_upgrade()

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            super().on_message_begin()
            self.scope.setdefault("extensions", {})[CONNECTION_CLOSED] = {"future": self._closed}

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + _LINE_OVERHEAD)
            super().on_header(name, value)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > max_head_bytes:
                self._too_large = True
                raise _HeadTooLarge

        def send_400_response(self, msg: str) -> None:
            # uvicorn answers every parse error with 400; ours gets its own status.
            if not self._too_large:
                super().send_400_response(msg)
                return
            body = protocol.problem_body(
                431,
                "Request Header Fields Too Large",
                f"the request line and headers exceed {max_head_bytes} bytes",
            )
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: " + protocol.PROBLEM_JSON.encode() + b"\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + body
            )
            self.transport.close()

    return GatewayHttpProtocol


class GatewayServer(uvicorn.Server):
    """uvicorn's server, which also stops the gateway accepting on the first signal.

    uvicorn closes the listening socket at once and waits for in-flight requests;
    marking the client draining makes requests on kept-alive connections get a
    fast 503 and /readyz report false while pending replies still arrive.
    """

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                loop="uvloop",
                http=gateway_http_protocol(settings.max_header_bytes),
                # Nothing reads the client address, and X-Forwarded-* from loopback is no reason
                # to rewrite it: uvicorn's proxy-headers middleware would run on every request.
                proxy_headers=False,
                access_log=False,
                log_config=None,
                lifespan="on",
                timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
            )
        )
        self._gateway_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: drain first, then let uvicorn shut down."""
        gateway = getattr(self._gateway_app.state, "gateway", None)
        if gateway is not None:
            gateway.client.drain()
        super().handle_exit(sig, frame)

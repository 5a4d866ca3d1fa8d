"""The gateway's HTTP protocol: uvicorn's httptools protocol with three additions.

* A head limit. uvicorn caps the request line and headers only in its h11 mode; with
  httptools a caller could send megabytes of headers and the gateway would hold them
  all. The head is counted while httptools parses it and, past the limit, answered
  with 431 and a problem document before the app sees anything.
* One send() per response, through `CoalescingTransport`.
* A connection-closed future in each request's scope (`CONNECTION_CLOSED`), so the RPC
  endpoint learns of a caller leaving from a callback instead of a task per request
  waiting in ``receive()``.

It subclasses a class of uvicorn's that is not public API and overrides the hooks in
`OVERRIDDEN`. That seam is pinned: uvicorn's version is bounded in pyproject.toml and locked
in uv.lock, ``tests/gateway/test_uvicorn_seam.py`` fails with a message naming the hook if
a uvicorn release changes one, and at start `seam_intact` checks the installed uvicorn so
that an unverified one is served with uvicorn's own h11 protocol instead (`gateway.server`).
"""

from __future__ import annotations

import asyncio
import inspect

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from kafkarpc import protocol

from .transport import CoalescingTransport

CONNECTION_CLOSED = "rpcgw.connection_closed"
"""ASGI extension: ``scope["extensions"][CONNECTION_CLOSED]["future"]`` is done once the caller's
connection closes."""

# Per header line: ": " and CRLF around the name and value httptools hands over.
_LINE_OVERHEAD = 4

VERIFIED_UVICORN = "0.54."
"""The uvicorn release series `GatewayHttpProtocol` was written and tested against."""
OVERRIDDEN: dict[str, tuple[str, ...]] = {
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "eof_received": ("self",),
    "handle_websocket_upgrade": ("self",),
    "on_message_begin": ("self",),
    "on_url": ("self", "url"),
    "on_header": ("self", "name", "value"),
    "send_400_response": ("self", "msg"),
}
"""The `HttpToolsProtocol` methods the gateway's protocol overrides, with their parameters."""


def seam_intact() -> bool:
    """Whether the installed uvicorn is the verified series and still has every overridden hook."""
    if not uvicorn.__version__.startswith(VERIFIED_UVICORN):
        return False
    for name, parameters in OVERRIDDEN.items():
        hook = getattr(HttpToolsProtocol, name, None)
        if hook is None or tuple(inspect.signature(hook).parameters) != parameters:
            return False
    return True


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

"""The HTTP server: uvicorn tuned for the gateway, draining on the first signal.

uvicorn caps the request line and headers only in its h11 mode; with httptools a
caller could send megabytes of headers and the gateway would hold them all. The
protocol here counts the head while httptools parses it and, past the limit, answers
431 with a problem document and closes the connection before the app sees anything.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from workers import protocol

if TYPE_CHECKING:
    from types import FrameType

    from fastapi import FastAPI

    from .settings import GatewaySettings

# Per header line: ": " and CRLF around the name and value httptools hands over.
_LINE_OVERHEAD = 4


class _HeadTooLarge(Exception):
    """Raised inside a parser callback to stop parsing; httptools reports it as a parse error."""


def bounded_http_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """An `HttpToolsProtocol` class refusing request heads over ``max_head_bytes`` with 431."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes = 0
        _too_large = False

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            super().on_message_begin()

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

    return BoundedHttpToolsProtocol


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
                http=bounded_http_protocol(settings.max_header_bytes),
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

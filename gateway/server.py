"""The HTTP server: uvicorn tuned for the gateway, draining on the first signal."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import uvicorn

from .httpprotocol import VERIFIED_UVICORN, gateway_http_protocol, seam_intact

if TYPE_CHECKING:
    from types import FrameType

    from fastapi import FastAPI

    from .settings import GatewaySettings

log = logging.getLogger(__name__)


def http_protocol(settings: GatewaySettings) -> dict[str, Any]:
    """uvicorn's ``http`` options for ``GATEWAY_HTTP_PROTOCOL``.

    ``gateway``: `gateway.httpprotocol` (431 past the head limit, one write per response,
    the connection-closed signal). ``h11``: uvicorn's h11 protocol, whose own head limit is
    set to the same size (past it the answer is 400), slower per request. ``auto``: the
    gateway's unless the installed uvicorn is not the one it was verified with.
    """
    choice = settings.http_protocol
    if choice == "auto":
        choice = "gateway" if seam_intact() else "h11"
        if choice == "h11":
            log.warning(
                "uvicorn %s is not the %sx the gateway's HTTP protocol was verified with; "
                "serving with uvicorn's h11 protocol instead (same head limit, more CPU per request)",
                uvicorn.__version__,
                VERIFIED_UVICORN,
            )
    if choice == "gateway":
        return {"http": gateway_http_protocol(settings.max_header_bytes)}
    return {"http": "h11", "h11_max_incomplete_event_size": settings.max_header_bytes}


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
                **http_protocol(settings),
                # Nothing reads the client address, and X-Forwarded-* from loopback is no reason
                # to rewrite it: uvicorn's proxy-headers middleware would run on every request.
                proxy_headers=False,
                server_header=False,  # no "server: uvicorn" (and version hunting) in every answer
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

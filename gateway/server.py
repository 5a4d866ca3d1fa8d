"""The HTTP server: uvicorn tuned for the gateway, draining on the first signal."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import uvicorn

from .connections import Connections
from .httpprotocol import VERIFIED_UVICORN, gateway_http_protocol, seam_intact
from .limits import ConnectionLimits, open_files

if TYPE_CHECKING:
    import socket
    from types import FrameType

    from fastapi import FastAPI

    from .settings import GatewaySettings

log = logging.getLogger(__name__)


def http_protocol(settings: GatewaySettings, connections: Connections | None = None) -> dict[str, Any]:
    """uvicorn's ``http`` options for ``GATEWAY_HTTP_PROTOCOL``.

    ``gateway``: `gateway.httpprotocol` (431 past the head limit, one write per response,
    the connection-closed signal, the head, body and idle timeouts and the connection cap of
    ``connections``). ``h11``: uvicorn's h11 protocol, whose own head limit is set to the same
    size (past it the answer is 400), slower per request; of the connection limits it keeps
    only the idle timeout and, at the ceiling, uvicorn's plain 503 to every request, probes
    included. ``auto``: the gateway's unless the installed uvicorn is not the one it was
    verified with.
    """
    if connections is None:
        connections = Connections(ConnectionLimits.of(settings, open_files()))
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
    # uvicorn's own timer; the gateway's protocol closes idle connections from its sweep instead.
    keep_alive = math.ceil(settings.keepalive_timeout)
    if choice == "gateway":
        return {
            "http": gateway_http_protocol(settings.max_header_bytes, connections),
            "timeout_keep_alive": keep_alive,
        }
    return {
        "http": "h11",
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": keep_alive,
        "limit_concurrency": connections.limits.ceiling,
    }


class GatewayServer(uvicorn.Server):
    """uvicorn's server, which also stops the gateway accepting on the first signal.

    uvicorn closes the listening socket at once and waits for in-flight requests;
    marking the client draining makes requests on kept-alive connections get a
    fast 503 and /readyz report false while pending replies still arrive.
    """

    def __init__(self, app: FastAPI, settings: GatewaySettings) -> None:
        self.connections = Connections(ConnectionLimits.of(settings, open_files()))
        """The HTTP connections' limits, sweep and metrics."""
        super().__init__(
            uvicorn.Config(
                app,
                host=settings.host,
                port=settings.port,
                loop="uvloop",
                **http_protocol(settings, self.connections),
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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's start-up (the app's lifespan, then listening); then the connection metrics
        join the app's, which the lifespan has just built."""
        await super().startup(sockets)
        gateway = getattr(self._gateway_app.state, "gateway", None)
        if gateway is not None and not isinstance(self.config.http, str):  # not uvicorn's own h11
            self.connections.metrics.join(gateway.metrics.registry)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: drain first, then let uvicorn shut down."""
        gateway = getattr(self._gateway_app.state, "gateway", None)
        if gateway is not None:
            gateway.client.drain()
        super().handle_exit(sig, frame)

"""``python -m gateway``: settings from the environment, then uvicorn (uvloop, httptools)."""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

from workers.connection import KafkaSettings, redacted
from workers.logs import configure_logging

from .app import create_app
from .kafka import producer_config
from .settings import GatewaySettings

log = logging.getLogger("gateway")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, which also stops the gateway accepting on the first signal.

    uvicorn closes the listening socket at once and waits for in-flight requests;
    marking the client draining makes requests on kept-alive connections get a
    fast 503 and /readyz report false while pending replies still arrive.
    """

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._gateway_app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: drain first, then let uvicorn shut down."""
        gateway = getattr(self._gateway_app.state, "gateway", None)
        if gateway is not None:
            gateway.client.drain()
        super().handle_exit(sig, frame)


def main() -> None:
    """Run the gateway until SIGTERM/SIGINT; a second signal forces exit."""
    settings = GatewaySettings()
    kafka_settings = KafkaSettings()
    configure_logging(settings.log_level)
    log.info(
        "starting gateway",
        extra={
            "settings": settings.model_dump(),
            "kafka": redacted(producer_config(settings, kafka_settings, "-")),
        },
    )
    app = create_app(settings, kafka_settings)
    server = GatewayServer(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=int(settings.graceful_shutdown_seconds),
        ),
        app,
    )
    server.run()


if __name__ == "__main__":
    main()

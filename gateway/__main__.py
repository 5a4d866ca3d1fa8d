"""``python -m gateway``: settings from the environment, then uvicorn (uvloop, httptools)."""

from __future__ import annotations

import logging

from kafkarpc.connection import KafkaSettings, redacted
from kafkarpc.logs import configure_logging

from .app import create_app
from .server import GatewayServer
from .settings import GatewaySettings

log = logging.getLogger("gateway")


def main() -> None:
    """Run the gateway until SIGTERM/SIGINT; a second signal forces exit."""
    settings = GatewaySettings()
    kafka_settings = KafkaSettings()
    configure_logging(settings.log_level, settings.log_format)
    log.info(
        "starting gateway",
        extra={
            "settings": settings.model_dump(),
            "kafka": redacted(settings.producer_config(kafka_settings, "-")),
        },
    )
    app = create_app(settings, kafka_settings)
    GatewayServer(app, settings).run()


if __name__ == "__main__":
    main()

"""``python -m gateway``: settings from the environment, then uvicorn (uvloop, httptools)."""

from __future__ import annotations

import logging
import sys

from kafkarpc import heap
from kafkarpc.connection import KafkaSettings, redacted
from kafkarpc.logs import configure_logging
from kafkarpc.tracing import Tracing

from .access import AccessSettings
from .app import create_app
from .limits import raise_open_files
from .server import GatewayServer
from .settings import GatewaySettings

log = logging.getLogger("gateway")

SERVICE_NAME = "kafka-rpc-gateway"
"""The traces' ``service.name`` unless ``OTEL_SERVICE_NAME`` says otherwise."""


def main() -> None:
    """Run the gateway until SIGTERM/SIGINT; a second signal forces exit."""
    settings = GatewaySettings()
    kafka_settings = KafkaSettings()
    access = AccessSettings()
    configure_logging(settings.log_level, settings.log_format)
    raise_open_files()  # each HTTP connection holds a descriptor (gateway.limits)
    if access.mode is None:
        sys.exit(
            "GATEWAY_AUTH is not set: set it to jwt, apikey or jwt,apikey (docs/SECURITY.md), "
            "or to none to let every caller call every method"
        )
    log.info(
        "starting gateway",
        extra={
            "settings": settings.model_dump(),
            "access": access.model_dump(exclude={"policy"}),
            "kafka": redacted(settings.producer_config(kafka_settings, "-")),
        },
    )
    tracing = Tracing.from_environment(SERVICE_NAME)
    if tracing is not None:
        log.info("tracing on", extra={"resource": dict(tracing.provider.resource.attributes)})
    tracer = None if tracing is None else tracing.tracer
    app = create_app(settings, kafka_settings, access=access, tracer=tracer)
    heap.freeze()  # full collections under load skip what start-up built (kafkarpc.heap)
    try:
        GatewayServer(app, settings).run()
    finally:
        if tracing is not None:
            tracing.shutdown()  # the last spans: the drain's


if __name__ == "__main__":
    main()

"""The application factory: the FastAPI app, its routes, and the lifecycle of its components.

The lifespan builds the components (`gateway.assembly`) and puts them on
``app.state.gateway``, where the routes find them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from kafkarpc.clients import ConfluentClients

from . import problems, routes, rpc, streams
from .assembly import assemble

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from kafkarpc.clients import KafkaClients
    from kafkarpc.connection import KafkaSettings

    from .client import RequestReplyClient
    from .settings import GatewaySettings

log = logging.getLogger(__name__)


class GatewayAPI(FastAPI):
    """FastAPI, with ``/rpc/`` and ``/stream/`` served by bare endpoints ahead of its middleware."""

    rpc: rpc.RpcEndpoint | None = None
    """Set once the lifespan has built the Kafka side; until then ``/rpc/`` is FastAPI's 404."""
    events: streams.EventStreamEndpoint | None = None
    """Likewise for ``/stream/``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.rpc is not None and rpc.serves(path):
                await self.rpc(scope, receive, send)
                return
            if self.events is not None and streams.serves(path):
                await self.events(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the endpoints it does not route."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"] = {
                f"{rpc.PREFIX}{{method}}": rpc.OPENAPI_PATH,
                f"{streams.PREFIX}{{topic}}": streams.OPENAPI_PATH,
                **schema.get("paths", {}),
            }
        return self.openapi_schema or {}


def create_app(
    settings: GatewaySettings,
    kafka_settings: KafkaSettings,
    clients: KafkaClients | None = None,
) -> GatewayAPI:
    """The gateway ASGI app; Kafka clients start in the lifespan.

    Start-up runs in the background, so /healthz answers and /readyz reports 503
    while Kafka is being reached; ``app.state.started`` (an `asyncio.Event`) is set
    once requests are accepted. ``clients`` replaces confluent-kafka (unit tests).
    """
    started = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway = assemble(settings, kafka_settings, clients or ConfluentClients())
        app.state.gateway = gateway
        app.rpc = rpc.RpcEndpoint(
            ids=gateway.ids,
            metrics=gateway.metrics,
            headers=gateway.headers,
            body_limit=gateway.body_limit,
            caller=gateway.client,
            timing=settings.timing,
        )
        app.events = streams.EventStreamEndpoint(gateway.streams)
        starting = asyncio.create_task(_start(gateway.client, started), name="rpcgw-start")
        try:
            yield
        finally:
            gateway.client.drain()
            if not starting.done():
                starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await gateway.streams.close()
            await gateway.client.stop(settings.max_timeout, settings.flush_timeout)
            log.info("gateway stopped")

    app = GatewayAPI(
        title="Kafka RPC Gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.started = started
    problems.install(app)
    app.include_router(routes.router)
    app.include_router(streams.router)
    return app


async def _start(client: RequestReplyClient, started: asyncio.Event) -> None:
    try:
        await client.start()
        started.set()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gateway failed to start; it stays unready")
        raise

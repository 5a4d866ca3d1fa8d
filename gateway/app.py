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

from . import docs, openapi, problems, routes, rpc, streams
from .assembly import Gateway, assemble

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from kafkarpc.clients import KafkaClients
    from kafkarpc.connection import KafkaSettings

    from .catalog import Catalog
    from .settings import GatewaySettings

log = logging.getLogger(__name__)


class GatewayAPI(FastAPI):
    """FastAPI, with ``/rpc/``, ``/stream/`` and the catalog's routes served ahead of its middleware."""

    rpc: rpc.RpcEndpoint | None = None
    """Set once the lifespan has built the Kafka side; until then ``/rpc/`` is FastAPI's 404."""
    events: streams.EventStreamEndpoint | None = None
    """Likewise for ``/stream/``."""
    catalog: Catalog | None = None
    """Routes of the methods live workers announce; None without a catalog."""
    _openapi_base: dict[str, Any] | None = None
    _openapi_version = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.rpc is not None and rpc.serves(path):
                await self.rpc(scope, receive, send)
                return
            if self.events is not None and streams.serves(path):
                await self.events(scope, receive, send)
                return
            if self.rpc is not None and self.catalog is not None:
                # Matched as sent, so an encoded "/" stays inside its segment (%2F); values are decoded.
                raw = scope.get("raw_path")
                sent = raw.partition(b"?")[0].decode("latin-1") if raw else path
                match = self.catalog.match(scope["method"], sent)
                if match is not None:
                    await self.rpc.route(match, scope, receive, send)
                    return
        await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, the bare endpoints, and every method and route of the catalog."""
        if self._openapi_base is None:
            base = super().openapi()
            base["paths"] = {
                f"{rpc.PREFIX}{{method}}": rpc.OPENAPI_PATH,
                f"{streams.PREFIX}{{topic}}": streams.OPENAPI_PATH,
                **base.get("paths", {}),
            }
            self._openapi_base = base
        version = 0 if self.catalog is None else self.catalog.version
        if self.openapi_schema is None or version != self._openapi_version:
            methods = (
                [] if self.catalog is None else [served.method for served in self.catalog.served.values()]
            )
            self.openapi_schema = openapi.document(self._openapi_base, methods)
            self._openapi_version = version
        return self.openapi_schema


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
            catalog=gateway.catalog if settings.unknown_methods == "reject" else None,
        )
        app.events = streams.EventStreamEndpoint(gateway.streams)
        app.catalog = gateway.catalog
        starting = asyncio.create_task(_start(gateway, started), name="rpcgw-start")
        try:
            yield
        finally:
            gateway.client.drain()
            if not starting.done():
                starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await gateway.streams.close()
            await gateway.client.stop(settings.max_timeout, settings.flush_timeout)
            if gateway.catalog is not None:
                await gateway.catalog.stop()
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
    docs.install(app)
    app.include_router(streams.router)
    return app


async def _start(gateway: Gateway, started: asyncio.Event) -> None:
    try:
        if gateway.catalog is None:
            await gateway.client.start()
        else:
            await asyncio.gather(gateway.client.start(), gateway.catalog.start())
        started.set()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gateway failed to start; it stays unready")
        raise

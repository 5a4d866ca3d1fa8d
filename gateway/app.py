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

from . import docs, locations, openapi, problems, results, routes, rpc, streams
from .access import AccessSettings, Resource
from .access import build as build_access
from .assembly import Gateway, assemble
from .errors import GatewayError
from .spans import ServerSpans

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from kafkarpc.clients import KafkaClients
    from kafkarpc.connection import KafkaSettings
    from kafkarpc.tracing import Tracer

    from .access import Gatekeeper
    from .catalog import Catalog
    from .settings import GatewaySettings

log = logging.getLogger(__name__)

PUBLISH_PREFIX = "/publish/"
WS_PREFIX = "/ws/"


class GatewayAPI(FastAPI):
    """FastAPI, with ``/rpc/``, ``/stream/`` and the catalog's routes served ahead of its middleware."""

    rpc: rpc.RpcEndpoint | None = None
    """Set once the lifespan has built the Kafka side; until then ``/rpc/`` is FastAPI's 404."""
    events: streams.EventStreamEndpoint | None = None
    """Likewise for ``/stream/``."""
    results: results.ResultEndpoint | None = None
    """Likewise for ``/results/``."""
    catalog: Catalog | None = None
    """Routes of the methods live workers announce; None without a catalog."""
    gate: Gatekeeper | None = None
    """Admits callers to methods, routes and topics; None with ``GATEWAY_AUTH=none``."""
    spans: ServerSpans | None = None
    """Traces each HTTP call; None when tracing is off (`kafkarpc.tracing`)."""
    _openapi_base: dict[str, Any] | None = None
    _openapi_version = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.spans is not None and self.spans.traces(scope):
            await self.spans.serve(self._serve, scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if self.rpc is not None and rpc.serves(path):
                if self.gate is None or await self._admitted(
                    scope, receive, send, "methods", path[len(rpc.PREFIX) :]
                ):
                    await self.rpc(scope, receive, send)
                return
            if self.results is not None and results.serves(path):
                if self.gate is None or await self._identified(scope, receive, send):
                    await self.results(scope, receive, send)
                return
            if self.events is not None and streams.serves(path):
                if self.gate is None or await self._admitted(
                    scope, receive, send, "stream", path[len(streams.PREFIX) :]
                ):
                    await self.events(scope, receive, send)
                return
            if self.rpc is not None and self.catalog is not None:
                # Matched as sent, so an encoded "/" stays inside its segment (%2F); values are decoded.
                raw = scope.get("raw_path")
                sent = raw.partition(b"?")[0].decode("latin-1") if raw else path
                match = self.catalog.match(scope["method"], sent)
                if match is not None:
                    # A path without a route for this verb is a 405 for anyone: no need to ask.
                    if (
                        self.gate is None
                        or match.method is None
                        or await self._admitted(
                            scope, receive, send, "routes", str(match.route), match.method
                        )
                    ):
                        await self.rpc.route(match, scope, receive, send)
                    return
        if self.gate is not None and not await self._framework_route_admitted(scope, receive, send):
            return
        await super().__call__(scope, receive, send)

    async def _framework_route_admitted(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """For FastAPI's routes that reach Kafka (publish, WebSocket streams): whether admitted."""
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(PUBLISH_PREFIX):
            return await self._admitted(scope, receive, send, "publish", path[len(PUBLISH_PREFIX) :])
        if scope["type"] == "websocket" and path.startswith(WS_PREFIX):
            return await self._admitted(scope, receive, send, "stream", path[len(WS_PREFIX) :])
        return True

    async def _identified(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Whether the caller proved who it is (a result checks it is its own); if not, the 401 is sent."""
        assert self.gate is not None
        try:
            await self.gate.identify(scope)
        except GatewayError as error:
            await problems.from_error(error)(scope, receive, send)
            return False
        return True

    async def _admitted(  # noqa: PLR0917 (the ASGI triple and the resource)
        self, scope: Scope, receive: Receive, send: Send, kind: str, name: str, method: str | None = None
    ) -> bool:
        """Whether the `Gatekeeper` admits the caller to a resource; if not, the 401 or 403 is sent."""
        assert self.gate is not None
        try:
            await self.gate.admit(scope, Resource(kind, name, method))
        except GatewayError as error:
            if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
                await send(
                    {"type": "websocket.close", "code": streams.POLICY_VIOLATION, "reason": error.title}
                )
            else:  # a WebSocket handshake is refused with the same HTTP answer (a denial response)
                await problems.from_error(error)(scope, receive, send)
            return False
        return True

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, the bare endpoints, and every method and route of the catalog."""
        if self._openapi_base is None:
            base = super().openapi()
            base["paths"] = {
                f"{rpc.PREFIX}{{method}}": rpc.OPENAPI_PATH,
                f"{streams.PREFIX}{{topic}}": streams.OPENAPI_PATH,
                f"{locations.PREFIX}{{token}}": results.OPENAPI_PATH,
                **base.get("paths", {}),
            }
            if self.gate is not None:  # so that /docs asks for a credential and sends it
                schemes = self.gate.security_schemes()
                base.setdefault("components", {})["securitySchemes"] = schemes
                base["security"] = [{name: []} for name in schemes]
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
    *,
    access: AccessSettings | None = None,
    tracer: Tracer | None = None,
) -> GatewayAPI:
    """The gateway ASGI app; Kafka clients start in the lifespan.

    Start-up runs in the background, so /healthz answers and /readyz reports 503
    while Kafka is being reached; ``app.state.started`` (an `asyncio.Event`) is set
    once requests are accepted. ``clients`` replaces confluent-kafka (unit tests).
    ``access`` says who may call what; None lets everyone in, like ``GATEWAY_AUTH=none``.
    ``tracer`` traces every call (`kafkarpc.tracing`); None, the default, traces nothing.
    """
    started = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gateway = assemble(settings, kafka_settings, clients or ConfluentClients(), tracer)
        app.state.gateway = gateway
        control = (
            None
            if access is None
            else build_access(
                access,
                gateway.metrics.registry,
                max_pending=settings.max_pending,
                retry_after=settings.retry_after,
            )
        )
        if control is not None:
            app.gate = control.gatekeeper
            await app.gate.start()
        elif access is not None:
            log.warning("GATEWAY_AUTH=none: every caller may call every method and topic the gateway serves")
        app.rpc = rpc.RpcEndpoint(
            ids=gateway.ids,
            metrics=gateway.metrics,
            headers=gateway.headers,
            body_limit=gateway.body_limit,
            caller=gateway.client,
            timing=settings.timing,
            catalog=gateway.catalog,
            reject_unknown=settings.unknown_methods == "reject",
            share=None if control is None else control.share,
            settings=settings,
            locations=gateway.locations,
            traced=tracer is not None,
        )
        app.results = results.ResultEndpoint(
            locations=gateway.locations,
            finder=gateway.lookup,
            headers=gateway.headers,
            max_wait=settings.max_timeout,
            retry_after=settings.retry_after,
            lookups=gateway.metrics.result_lookups,
            dropped=lambda reason: gateway.metrics.reply_headers_dropped.labels(reason).inc(),
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
            await gateway.lookup.close()
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
    templates = {
        rpc.PREFIX: rpc.ROUTE,
        locations.PREFIX: locations.PREFIX + "{token}",
        streams.PREFIX: streams.PREFIX + "{topic}",
    }
    app.spans = None if tracer is None else ServerSpans(tracer, templates)
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

"""The application factory: wires settings into components and runs their lifecycle.

Routes find the shared components on ``request.app.state.gateway`` (a `Gateway`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from kafkarpc import protocol
from kafkarpc.clients import ConfluentClients
from kafkarpc.producer import AsyncProducer
from kafkarpc.statistics import consumer_lag

from . import problems, routes, rpc, streams
from .client import RequestReplyClient
from .correlation import CorrelationIds
from .feeds import Streams
from .headers import HeaderPolicy
from .health import KafkaHealth
from .metrics import GatewayMetrics
from .pending import PendingReplies
from .publisher import TopicPublisher
from .replies import ReplyListener, ReplyRouter

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from kafkarpc.clients import KafkaClients
    from kafkarpc.connection import KafkaSettings

    from .settings import GatewaySettings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Gateway:
    """The running components, shared by all routes through ``app.state.gateway``."""

    settings: GatewaySettings
    ids: CorrelationIds
    metrics: GatewayMetrics
    headers: HeaderPolicy
    body_limit: int
    """Largest accepted request body in bytes."""
    health: KafkaHealth
    producer: AsyncProducer
    listener: ReplyListener
    client: RequestReplyClient
    publisher: TopicPublisher
    streams: Streams


class GatewayAPI(FastAPI):
    """FastAPI, with ``/rpc/`` requests handed to `RpcEndpoint` ahead of its middleware and routing."""

    rpc: rpc.RpcEndpoint | None = None
    """Set once the lifespan has built the Kafka side; until then ``/rpc/`` is FastAPI's 404."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.rpc is not None and scope["type"] == "http" and rpc.serves(scope["path"]):
            await self.rpc(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, plus the endpoint it does not route."""
        if self.openapi_schema is None:
            schema = super().openapi()
            schema["paths"] = {f"{rpc.PREFIX}{{method}}": rpc.OPENAPI_PATH, **schema.get("paths", {})}
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
        gateway = _assemble(settings, kafka_settings, clients or ConfluentClients())
        app.state.gateway = gateway
        app.rpc = rpc.RpcEndpoint(
            ids=gateway.ids,
            metrics=gateway.metrics,
            headers=gateway.headers,
            body_limit=gateway.body_limit,
            caller=gateway.client,
            timing=settings.timing,
        )
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


def _assemble(settings: GatewaySettings, kafka_settings: KafkaSettings, clients: KafkaClients) -> Gateway:
    ids = CorrelationIds()
    metrics = GatewayMetrics(settings.max_timeout, settings.metric_methods_limit)
    pending: PendingReplies[protocol.Reply] = PendingReplies(settings.max_pending)
    health = KafkaHealth(settings.request_topic, settings.reply_topic, settings.startup_timeout)
    producer_config = settings.producer_config(kafka_settings, ids.tag)
    producer = AsyncProducer(clients, {**producer_config, "error_cb": health.on_error})
    health.attach(producer.client)
    router = ReplyRouter(pending, ids, metrics, timing=settings.timing)

    def reply_lag(statistics: str) -> None:
        metrics.reply_consumer_lag.set(consumer_lag(statistics, since="delivered"))

    consumer_config = settings.consumer_config(kafka_settings, ids.tag)
    listener = ReplyListener(
        clients.consumer({**consumer_config, "error_cb": health.on_error, "stats_cb": reply_lag}),
        on_batch=router.route,
        batch_size=settings.consume_batch_size,
        timeout=settings.startup_timeout,
    )
    client = RequestReplyClient(
        settings=settings,
        ids=ids,
        pending=pending,
        producer=producer,
        listener=listener,
        health=health,
        metrics=metrics,
    )
    return Gateway(
        settings=settings,
        ids=ids,
        metrics=metrics,
        headers=HeaderPolicy(settings.forward_headers, settings.max_forward_header_bytes),
        body_limit=settings.body_limit(producer_config),
        health=health,
        producer=producer,
        listener=listener,
        client=client,
        publisher=TopicPublisher(
            producer, settings.publish_topics, settings.startup_timeout, refused=client.produce_failed
        ),
        streams=Streams(
            clients,
            consumer_config,
            frozenset(settings.stream_topics),
            max_streams=settings.max_streams,
            buffer=settings.stream_buffer,
            timeout=settings.startup_timeout,
            metrics=metrics,
        ),
    )


async def _start(client: RequestReplyClient, started: asyncio.Event) -> None:
    try:
        await client.start()
        started.set()
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("gateway failed to start; it stays unready")
        raise

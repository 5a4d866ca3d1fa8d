"""The FastAPI routes: publish, health, readiness and metrics (``/rpc/`` is `gateway.rpc`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from kafkarpc import protocol

from . import problems
from .access import IDENTITY
from .errors import GatewayError
from .rpc import read_body

if TYPE_CHECKING:
    from .assembly import Gateway

router = APIRouter()


@router.post("/publish/{topic}", status_code=202)
async def publish(topic: str, request: Request, key: str | None = None) -> Response:
    """Write the body to an allow-listed topic; 202 with partition and offset once delivered."""
    gateway: Gateway = request.app.state.gateway
    gateway.ids.new()
    try:
        gateway.client.ensure_accepting()
        admitted = gateway.headers.admit(request.headers.raw)
        body = await read_body(request.receive, gateway.body_limit, admitted.content_length)
        headers = [(protocol.CONTENT_TYPE, admitted.content_type.encode()), *admitted.trace, *admitted.extra]
        caller: protocol.Identity | None = request.scope.get(IDENTITY)
        if caller is not None:
            headers.append((protocol.CALLER, caller.encode()))
        delivery = await gateway.publisher.publish(
            topic, body, None if key is None else key.encode(), headers, gateway.settings.default_timeout
        )
    except GatewayError as error:
        gateway.metrics.published.labels(_topic_label(gateway, topic), error.outcome).inc()
        return problems.from_error(error)
    gateway.metrics.published.labels(topic, "ok").inc()
    content = orjson.dumps(
        {"topic": delivery.topic, "partition": delivery.partition, "offset": delivery.offset}
    )
    return Response(content, status_code=202, media_type="application/json")


@router.get("/healthz")
async def healthz(request: Request) -> Response:
    """Liveness: false only when the process must be restarted (fatal Kafka client error)."""
    gateway: Gateway = request.app.state.gateway
    if gateway.health.fatal is not None:
        return problems.problem(503, "Service Unavailable", f"fatal Kafka error: {gateway.health.fatal}")
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Readiness: accepting, brokers reachable, the reply consumer positioned, the catalog read."""
    gateway: Gateway = request.app.state.gateway
    client = gateway.client
    checks = {
        "state": client.state.value,
        "kafka": "reachable" if gateway.health.reachable else "unreachable",
        "reply_consumer": "positioned" if gateway.listener.positioned.is_set() else "starting",
    }
    catalog_read = gateway.catalog is None or gateway.catalog.ready.is_set()
    if gateway.catalog is not None:
        checks["catalog"] = "read" if catalog_read else "reading"
    if client.ready and catalog_read:
        return Response(orjson.dumps({"status": "ready", **checks}), media_type="application/json")
    return problems.problem(503, "Service Unavailable", "the gateway is not ready", checks=checks)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition, or OpenMetrics (with trace exemplars) when the scraper asks."""
    gateway: Gateway = request.app.state.gateway
    body, media_type = gateway.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=media_type)


def _topic_label(gateway: Gateway, topic: str) -> str:
    return topic if topic in gateway.settings.publish_topics else "_unknown"

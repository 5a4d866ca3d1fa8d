"""HTTP endpoints: thin, raw bytes in and out (no models on the hot path)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from workers import protocol

from . import problems
from .errors import BadRequestError, GatewayError, PayloadTooLargeError, ReplyTimeout

if TYPE_CHECKING:
    from starlette.types import Receive

    from .app import Gateway

log = logging.getLogger(__name__)
router = APIRouter()

PREFERENCE_APPLIED = "preference-applied"
# Statuses whose responses must not carry a body (RFC 9110 §6.4.1).
BODYLESS = frozenset({204, 304})


@router.post("/rpc/{method}")
async def rpc(method: str, request: Request) -> Response:
    """Send the body to a worker as ``method`` and answer with its reply."""
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    correlation_id = gateway.ids.new()
    label = gateway.metrics.method_label(method)
    applied: str | None = None
    try:
        if not protocol.valid_method(method):
            raise BadRequestError(f"{method!r} is not a valid method name")
        gateway.client.ensure_accepting()
        admitted = gateway.headers.admit(request.headers.raw)
        body = await read_body(request, gateway.body_limit)
        timeout, honoured = gateway.client.timeout_for(admitted.wait)
        applied = f"wait={admitted.wait}" if honoured else None
        reply = await gateway.client.call(
            correlation_id,
            method,
            body,
            timeout,
            content_type=admitted.content_type,
            trace=admitted.trace,
            extra=admitted.extra,
            disconnected=partial(wait_disconnect, request.receive),
        )
        response = reply_response(reply)
        outcome = "ok" if reply.status < 400 else "rejected"
    except GatewayError as error:
        outcome = error.outcome
        if isinstance(error, ReplyTimeout):
            gateway.metrics.timeouts.labels(label).inc()
        log.info(
            "rpc failed",
            extra={"method": method, "outcome": outcome, "status": error.status, "detail": error.detail},
        )
        response = problems.from_error(error)
    gateway.metrics.requests.labels(label, outcome).inc()
    gateway.metrics.request_duration.labels(label).observe(time.perf_counter() - started)
    response.headers[problems.CORRELATION_HEADER] = correlation_id
    if applied is not None:
        response.headers[PREFERENCE_APPLIED] = applied
    return response


@router.post("/publish/{topic}", status_code=202)
async def publish(topic: str, request: Request, key: str | None = None) -> Response:
    """Write the body to an allow-listed topic; 202 with partition and offset once delivered."""
    gateway: Gateway = request.app.state.gateway
    gateway.ids.new()
    try:
        gateway.client.ensure_accepting()
        admitted = gateway.headers.admit(request.headers.raw)
        body = await read_body(request, gateway.body_limit)
        headers = [(protocol.CONTENT_TYPE, admitted.content_type.encode()), *admitted.trace, *admitted.extra]
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
    """Readiness: accepting, brokers reachable and the reply consumer positioned."""
    gateway: Gateway = request.app.state.gateway
    client = gateway.client
    checks = {
        "state": client.state.value,
        "kafka": "reachable" if gateway.health.reachable else "unreachable",
        "reply_consumer": "positioned" if gateway.listener.positioned.is_set() else "starting",
    }
    if client.ready:
        return Response(orjson.dumps({"status": "ready", **checks}), media_type="application/json")
    return problems.problem(503, "Service Unavailable", "the gateway is not ready", checks=checks)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text exposition."""
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLargeError(f"the body has {length} bytes, limit {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    """Return when the caller disconnects (the body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def reply_response(reply: protocol.Reply) -> Response:
    """The HTTP response for a worker reply: pass through below 500, 502 otherwise.

    Raises:
        WorkerError: a 5xx, a non-final status or an unusable content type.
    """
    if reply.status >= 500 or reply.status < 200:
        raise problems.worker_error(reply)
    content_type = reply.content_type
    # The worker is untrusted: a content type with CR/LF would split the HTTP response.
    if not content_type.isascii() or not content_type.isprintable():
        raise problems.worker_error(reply)
    body = b"" if reply.status in BODYLESS else reply.body
    # Set as a header, not media_type, so Starlette passes it through without adding a charset.
    return Response(body, status_code=reply.status, headers={"content-type": content_type})


def _topic_label(gateway: Gateway, topic: str) -> str:
    return topic if topic in gateway.settings.publish_topics else "_unknown"

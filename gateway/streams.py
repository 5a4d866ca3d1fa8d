"""Live streaming of allow-listed topics over Server-Sent Events and WebSocket.

    GET /stream/{topic}   text/event-stream, one ``message`` event per record
    WS  /ws/{topic}       one JSON text frame per record

Each connection is a `Subscription` to its topic's one `TopicFeed` (`gateway.feeds`), from
the moment it connects. Topics outside the allow-list, or missing from the cluster, are 404
and never created. A subscriber too slow to keep up is cut off (`GATEWAY_STREAM_BUFFER`):
SSE ends with an ``overflow`` event, WebSocket closes with 1013 (try again later).

SSE is served by `EventStreamEndpoint`, a bare ASGI app that `GatewayAPI` calls ahead of
FastAPI, like ``/rpc/``. A stream lives as long as its connection, and everything a
framework keeps per request (task groups, exit stacks, cancel scopes) is then held for
that long: with FastAPI's StreamingResponse, 10,000 open streams kept about 1.9 million
objects that each full garbage collection walked, stopping the loop for a second
(docs/benchmarks/streams.md).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from kafkarpc import protocol

from . import problems
from .errors import GatewayError, MethodNotAllowedError, UnavailableError, UnknownTopicError
from .rpc import disconnection

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from .feeds import Streams, Subscription

PREFIX = "/stream/"
# SSE comment sent on idle streams (when `Streams` nudges them) so proxies do not close them.
KEEPALIVE = b": keepalive\n\n"
# WebSocket close codes (RFC 6455 §7.4, IANA registry): refused topic, and cut off as too slow.
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
OVERFLOW_EVENT = b'event: overflow\ndata: {"reason": "the client did not keep up; reconnect"}\n\n'
_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass events on at once
]


def serves(path: str) -> bool:
    """Whether ``path`` is ``/stream/{topic}`` with a non-empty topic and no further segment."""
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and path.find("/", len(PREFIX)) < 0


class EventStreamEndpoint:
    """Serves ``GET /stream/{topic}``; one instance per app, built with the `Streams`."""

    def __init__(self, streams: Streams) -> None:
        self._streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await problems.from_error(MethodNotAllowedError("use GET", allowed=("GET",)))(
                scope, receive, send
            )
            return
        try:
            subscription = await self._streams.subscribe(scope["path"][len(PREFIX) :])
        except GatewayError as error:
            await problems.from_error(error)(scope, receive, send)
            return
        try:
            await _serve(subscription, scope, receive, send)
        finally:
            self._streams.unsubscribe(subscription)


async def _serve(subscription: Subscription, scope: Scope, receive: Receive, send: Send) -> None:
    """Send the subscription's events until it ends or the caller leaves."""

    def caller_left(_: object) -> None:
        subscription.end()

    preamble = b": streaming " + subscription.feed.topic.encode() + b"\n\n"
    with disconnection(scope, receive) as closed:
        closed.add_done_callback(caller_left)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
            await send({"type": "http.response.body", "body": preamble, "more_body": True})
            while not subscription.ended:
                batch = await subscription.next()
                body = KEEPALIVE if batch is None else batch.events
                await send({"type": "http.response.body", "body": body, "more_body": True})
            last = OVERFLOW_EVENT if subscription.overflowed else b""
            await send({"type": "http.response.body", "body": last, "more_body": False})
        finally:
            closed.remove_done_callback(caller_left)


OPENAPI_PATH: dict[str, Any] = {
    "get": {
        "summary": "Stream a topic as Server-Sent Events",
        "description": (
            "Every record produced to `topic` from now on, as a `message` event whose data is the record "
            "as JSON (`value`, or `value_base64` for bytes that are not UTF-8) and whose id is "
            "`<partition>-<offset>`. Only topics on `GATEWAY_STREAM_TOPICS`. A client that falls "
            "`GATEWAY_STREAM_BUFFER` records behind gets an `overflow` event and the stream ends."
        ),
        "operationId": "stream",
        "parameters": [{"name": "topic", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "The event stream", "content": {"text/event-stream": {}}},
            "default": {
                "description": "A problem: 404 topic not allowed or missing, 503 too many streams",
                "content": {protocol.PROBLEM_JSON: {"schema": {"type": "object"}}},
            },
        },
    }
}
"""The OpenAPI path item of ``/stream/{topic}``, merged into FastAPI's generated document."""

router = APIRouter()


@router.websocket("/ws/{topic}")
async def websocket_stream(websocket: WebSocket, topic: str) -> None:
    """Stream ``topic`` over a WebSocket, from now on; messages from the client are ignored."""
    streams: Streams = websocket.app.state.gateway.streams
    try:
        subscription = await streams.subscribe(topic)
    except (UnknownTopicError, UnavailableError) as error:
        await websocket.close(code=POLICY_VIOLATION, reason=error.detail[:120])
        return
    await websocket.accept()
    try:
        await _relay(websocket, subscription)
    except WebSocketDisconnect:
        pass
    finally:
        streams.unsubscribe(subscription)


async def _relay(websocket: WebSocket, subscription: Subscription) -> None:
    """Send the subscription's records until either side ends."""
    receiving = asyncio.ensure_future(websocket.receive())
    try:
        while not subscription.ended:
            batch = asyncio.ensure_future(subscription.next())
            await asyncio.wait({batch, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done():
                if receiving.result()["type"] == "websocket.disconnect":
                    batch.cancel()
                    return
                receiving = asyncio.ensure_future(websocket.receive())
            if not batch.done():
                batch.cancel()
                continue
            for document in found.documents if (found := batch.result()) is not None else ():
                await websocket.send_text(document.decode())
        if subscription.overflowed:
            await websocket.close(code=TRY_AGAIN_LATER, reason="the client did not keep up; reconnect")
    finally:
        receiving.cancel()

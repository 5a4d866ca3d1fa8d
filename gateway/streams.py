"""Live streaming of allow-listed topics over Server-Sent Events and WebSocket.

    GET /stream/{topic}   text/event-stream, one ``message`` event per record
    WS  /ws/{topic}       one JSON text frame per record

Each connection is a `Subscription` to its topic's one `TopicFeed` (`gateway.feeds`), from
the moment it connects. Topics outside the allow-list, or missing from the cluster, are 404
and never created. A subscriber too slow to keep up is cut off (`GATEWAY_STREAM_BUFFER`):
SSE ends with an ``overflow`` event, WebSocket closes with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from .errors import UnavailableError, UnknownTopicError

if TYPE_CHECKING:
    from .feeds import Streams, Subscription

# SSE comment sent on idle streams so proxies do not close them.
KEEPALIVE_SECONDS = 15.0
# WebSocket close codes (RFC 6455 §7.4, IANA registry): refused topic, and cut off as too slow.
POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013
OVERFLOW_EVENT = b'event: overflow\ndata: {"reason": "the client did not keep up; reconnect"}\n\n'

router = APIRouter()


def _streams(app: Any) -> Streams:
    streams: Streams = app.state.gateway.streams
    return streams


@router.get("/stream/{topic}")
async def server_sent_events(topic: str, request: Request) -> StreamingResponse:
    """Stream ``topic`` as Server-Sent Events, from now on."""
    streams = _streams(request.app)
    subscription = await streams.subscribe(topic)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": streaming " + topic.encode() + b"\n\n"
            while not subscription.ended:
                batch = await subscription.next(KEEPALIVE_SECONDS)
                yield b": keepalive\n\n" if batch is None else batch.events
            if subscription.overflowed:
                yield OVERFLOW_EVENT
        finally:
            streams.unsubscribe(subscription)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


@router.websocket("/ws/{topic}")
async def websocket_stream(websocket: WebSocket, topic: str) -> None:
    """Stream ``topic`` over a WebSocket, from now on; messages from the client are ignored."""
    streams = _streams(websocket.app)
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

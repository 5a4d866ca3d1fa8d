"""Live streaming of allow-listed topics over Server-Sent Events and WebSocket.

    GET /stream/{topic}   text/event-stream, one ``message`` event per record
    WS  /ws/{topic}       one JSON text frame per record

Each connection gets a `TopicTail`: its own consumer, assigned (no consumer group,
so no rebalance between viewers) to every partition of the topic at its end, read
by one thread that hands whole batches to the event loop. A slow client fills its
bounded queue and the thread then waits, so memory stays bounded and the consumer
simply stops fetching. Disconnecting stops the thread, which closes the consumer.
Topics outside the allow-list, or missing from the cluster, are 404 and never created.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import threading
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import TopicPartition
from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from kafkarpc.batches import next_batch

from .errors import UnavailableError, UnknownTopicError

if TYPE_CHECKING:
    from .kafka import KafkaClients, KafkaConsumer, KafkaMessage

log = logging.getLogger("gateway.streams")

# Batches a connection may hold before its consumer thread waits for the client.
QUEUE_BATCHES = 16
# How often the consumer thread notices a disconnect when the topic is idle.
POLL_SECONDS = 0.5
# SSE comment sent on idle streams so proxies do not close them.
KEEPALIVE_SECONDS = 15.0
# WebSocket close code for a topic that may not be streamed (RFC 6455: policy violation).
POLICY_VIOLATION = 1008


class TopicTail:
    """One consumer thread following a topic from its end, batches delivered to the loop."""

    def __init__(self, consumer: KafkaConsumer, topic: str, loop: asyncio.AbstractEventLoop) -> None:
        self._consumer = consumer
        self._topic = topic
        self._loop = loop
        self._queue: asyncio.Queue[Sequence[KafkaMessage]] = asyncio.Queue(QUEUE_BATCHES)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{topic}", daemon=True)

    def start(self, timeout: float) -> None:
        """Assign every partition at its current end, then start reading.

        Raises:
            UnknownTopicError: the topic does not exist (it is not created).
        """
        metadata = self._consumer.list_topics(self._topic, timeout=timeout).topics.get(self._topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            self._consumer.close()
            raise UnknownTopicError(f"topic {self._topic!r} does not exist")
        partitions = []
        for partition in metadata.partitions:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=timeout
            ) or (0, 0)
            partitions.append(TopicPartition(self._topic, partition, high))
        self._consumer.assign(partitions)
        self._thread.start()

    async def get(self, wait: float | None = None) -> Sequence[KafkaMessage]:
        """The next batch, or an empty one after ``wait`` seconds of silence."""
        try:
            return await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return ()

    def stop(self) -> None:
        """Ask the thread to stop; it closes the consumer itself, off the event loop."""
        self._stopped.set()

    def join(self, timeout: float) -> None:
        """Wait for the thread, and so the consumer's close, to finish."""
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            while not self._stopped.is_set():
                batch = [m for m in next_batch(self._consumer, 500, POLL_SECONDS) if m.error() is None]
                if batch:
                    self._hand_over(batch)
        except Exception:
            log.exception("stream consumer for %s failed", self._topic)
        finally:
            self._consumer.close()

    def _hand_over(self, batch: Sequence[KafkaMessage]) -> None:
        # Blocks this thread (never the loop) while the client's queue is full.
        future = asyncio.run_coroutine_threadsafe(self._queue.put(batch), self._loop)
        while not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                future.result(timeout=POLL_SECONDS)
                return
        future.cancel()


def record_json(message: KafkaMessage) -> bytes:
    """One record as JSON: text values as ``value``, other bytes as ``value_base64``."""
    event: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": _text(message.key()),
    }
    raw = message.value() or b""
    try:
        event["value"] = raw.decode()
    except UnicodeDecodeError:
        event["value_base64"] = base64.b64encode(raw).decode()
    return orjson.dumps(event)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")


class Streams:
    """Open streams over an allow-list, with a cap on how many run at once."""

    def __init__(
        self,
        clients: KafkaClients,
        consumer_config: dict[str, Any],
        topics: frozenset[str],
        max_streams: int,
        timeout: float,
    ) -> None:
        self._clients = clients
        self._config = consumer_config
        self._topics = topics
        self._max_streams = max_streams
        self._slots = asyncio.Semaphore(max_streams)
        self._tails: set[TopicTail] = set()
        self._timeout = timeout

    @property
    def open_streams(self) -> int:
        """Connections streaming right now."""
        return len(self._tails)

    async def open(self, topic: str) -> TopicTail:
        """A running tail of ``topic``, positioned at its end.

        Raises:
            UnknownTopicError: the topic is not allow-listed or does not exist.
            UnavailableError: `max_streams` streams are open already.
        """
        if topic not in self._topics:
            raise UnknownTopicError(f"topic {topic!r} is not open for streaming")
        if self._slots.locked():
            raise UnavailableError("too many open streams", retry_after=5)
        await self._slots.acquire()
        config = {**self._config, "group.id": f"rpc-gateway-stream-{uuid.uuid4().hex}"}
        tail = TopicTail(self._clients.consumer(config), topic, asyncio.get_running_loop())
        try:
            # Metadata and watermark calls block: keep them off the event loop.
            await asyncio.to_thread(tail.start, self._timeout)
        except BaseException:
            self._slots.release()
            raise
        self._tails.add(tail)
        return tail

    def release(self, tail: TopicTail) -> None:
        """End a stream: its thread stops and closes the consumer; the slot frees up."""
        tail.stop()
        if tail in self._tails:
            self._tails.discard(tail)
            self._slots.release()

    async def close(self) -> None:
        """At shutdown: stop every stream and wait for its consumer to close."""
        tails = list(self._tails)
        for tail in tails:
            self.release(tail)
        for tail in tails:
            await asyncio.to_thread(tail.join, POLL_SECONDS * 4)


router = APIRouter()


def _streams(app: Any) -> Streams:
    streams: Streams = app.state.gateway.streams
    return streams


@router.get("/stream/{topic}")
async def server_sent_events(topic: str, request: Request) -> StreamingResponse:
    """Stream ``topic`` as Server-Sent Events, from now on."""
    streams = _streams(request.app)
    tail = await streams.open(topic)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": streaming " + topic.encode() + b"\n\n"
            while not await request.is_disconnected():
                batch = await tail.get(KEEPALIVE_SECONDS)
                if not batch:
                    yield b": keepalive\n\n"
                for message in batch:
                    yield b"id: %d-%d\nevent: message\ndata: %s\n\n" % (
                        message.partition() or 0,
                        message.offset() or 0,
                        record_json(message),
                    )
        finally:
            streams.release(tail)

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
        tail = await streams.open(topic)
    except (UnknownTopicError, UnavailableError) as error:
        await websocket.close(code=POLICY_VIOLATION, reason=error.detail[:120])
        return
    await websocket.accept()
    receiving = asyncio.ensure_future(websocket.receive())
    try:
        while True:
            batch = asyncio.ensure_future(tail.get())
            await asyncio.wait({batch, receiving}, return_when=asyncio.FIRST_COMPLETED)
            if receiving.done():
                if receiving.result()["type"] == "websocket.disconnect":
                    batch.cancel()
                    return
                receiving = asyncio.ensure_future(websocket.receive())
            if not batch.done():
                batch.cancel()
                continue
            for message in batch.result():
                await websocket.send_text(record_json(message).decode())
    except WebSocketDisconnect:
        pass
    finally:
        receiving.cancel()
        streams.release(tail)

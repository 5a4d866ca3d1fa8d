"""Topic feeds: ONE consumer per streamed topic, fanned out to every subscriber's bounded queue.

A `TopicFeed` starts with its first subscriber and stops with its last. Its `Fetcher`
assigns every partition of the topic at its end (no consumer group, so no rebalance
between viewers) and hands each batch to the loop, where the batch is encoded once (SSE
text and one JSON document per record) and appended to each subscriber's queue.

The feed never waits for a subscriber. A subscriber with more than ``buffer`` records
queued is cut off: it is removed from the feed at once, its queue is dropped, and it is
told why (`Subscription.overflowed`), so memory stays bounded by subscribers x ``buffer``
and one slow client cannot slow the others.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from confluent_kafka import KafkaException, TopicPartition

from kafkarpc.fetcher import Fetcher
from kafkarpc.topics import unusable

from .errors import UnavailableError, UnknownTopicError

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, KafkaClients, Message

    from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 15.0
"""A subscriber that got nothing for one to two of these periods is nudged to send a keepalive."""


@dataclass(frozen=True, slots=True)
class Batch:
    """Records fetched together, encoded once for every subscriber."""

    documents: list[bytes]
    """One JSON document per record (`record_json`)."""
    events: bytes
    """The same records as Server-Sent Events, ``id: <partition>-<offset>``."""


def record_json(message: Message) -> bytes:
    """One record as JSON: text values as ``value``, other bytes as ``value_base64``."""
    key = message.key()
    event: dict[str, Any] = {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "key": None if key is None else key.decode(errors="replace"),
    }
    raw = message.value() or b""
    try:
        event["value"] = raw.decode()
    except UnicodeDecodeError:
        event["value_base64"] = base64.b64encode(raw).decode()
    return orjson.dumps(event)


def encode(messages: list[Message]) -> Batch:
    """The `Batch` for fetched records."""
    documents = [record_json(message) for message in messages]
    events = b"".join(
        b"id: %d-%d\nevent: message\ndata: %s\n\n"
        % (message.partition() or 0, message.offset() or 0, document)
        for message, document in zip(messages, documents, strict=True)
    )
    return Batch(documents, events)


class Subscription:
    """One connection's view of a feed: a bounded queue of batches; use on the loop."""

    def __init__(self, feed: TopicFeed, buffer: int) -> None:
        self.feed = feed
        self._buffer = buffer
        self._batches: deque[Batch] = deque()
        self._queued = 0
        self._wakeup: asyncio.Future[None] | None = None
        self.quiet = False
        """Nothing offered since the last keepalive tick (`Streams` nudges quiet subscribers)."""
        self.ended = False
        """No more batches will come (overflow, the feed stopped, or the gateway is stopping)."""
        self.overflowed = False
        """Ended because more than ``buffer`` records were waiting for this subscriber."""

    def offer(self, batch: Batch) -> bool:
        """Queue ``batch``; False (and ended) when that would exceed the buffer."""
        if self.ended:
            return False
        self._queued += len(batch.documents)
        if self._queued > self._buffer:
            self.overflowed = True
            self._batches.clear()
            self.end()
            return False
        self.quiet = False
        self._batches.append(batch)
        self._wake()
        return True

    def end(self) -> None:
        """No more batches; a waiting `next` returns."""
        self.ended = True
        self._wake()

    def nudge(self) -> None:
        """Make a waiting `next` return None (time for a keepalive)."""
        self._wake()

    async def next(self) -> Batch | None:
        """The next batch; None when nudged, or once ended and drained."""
        if not self._batches and not self.ended:
            # One short-lived future per wait and no timer: with thousands of streams, every
            # object a wait keeps alive is walked by each full garbage collection.
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        if not self._batches:
            return None
        batch = self._batches.popleft()
        self._queued -= len(batch.documents)
        return batch

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)


class TopicFeed:
    """One topic's consumer and its subscribers."""

    def __init__(self, client: ConsumerClient, topic: str, timeout: float, metrics: GatewayMetrics) -> None:
        self.topic = topic
        self._timeout = timeout
        self._metrics = metrics
        self.subscribers: set[Subscription] = set()
        self._fetcher = Fetcher(client, name=f"stream-{topic}", on_batch=self._fan_out)
        self.started = self._fetcher.started
        self.stopped = self._fetcher.stopped
        self._fetcher.start(self._assign_all)

    def _assign_all(self, client: ConsumerClient) -> None:
        """Fetch thread: every partition of the topic, at its end.

        Raises:
            UnknownTopicError: the topic does not exist (it is never created).
            UnavailableError: the brokers did not answer.
        """
        try:
            cluster = client.list_topics(self.topic, timeout=self._timeout)
        except KafkaException as exc:
            raise UnavailableError(
                f"no metadata for topic {self.topic!r}: {exc.args[0]}", retry_after=1
            ) from None
        metadata = cluster.topics.get(self.topic)
        problem = unusable(self.topic, metadata)
        if problem is not None:
            log.warning("a stream topic cannot be followed", extra={"topic": self.topic, "cause": problem})
            raise UnknownTopicError(f"topic {self.topic!r} does not exist")  # callers learn no more
        partitions = []
        for number in metadata.partitions:
            try:
                watermarks = client.get_watermark_offsets(
                    TopicPartition(self.topic, number), timeout=self._timeout
                )
            except KafkaException as exc:  # timed out on a busy broker, say: 503, not a crash
                watermarks = None
                log.warning(
                    "no watermarks for a stream topic", extra={"topic": self.topic, "cause": str(exc)}
                )
            if watermarks is None:
                raise UnavailableError(f"no watermarks for {self.topic}[{number}]", retry_after=1)
            partitions.append(TopicPartition(self.topic, number, watermarks[1]))
        client.assign(partitions)

    def _fan_out(self, messages: list[Message], _fetched_at: float) -> None:
        batch = encode(messages)
        for subscriber in list(self.subscribers):
            if not subscriber.offer(batch):
                self.subscribers.discard(subscriber)
                self._metrics.stream_overflows.inc()
                log.warning("stream subscriber too slow; cut off", extra={"topic": self.topic})

    async def close(self) -> None:
        """End every subscription and close the consumer."""
        for subscriber in self.subscribers:
            subscriber.end()
        self.subscribers.clear()
        try:
            await self._fetcher.close()
        except Exception:
            log.warning("stream consumer had failed", extra={"topic": self.topic}, exc_info=True)


class Streams:
    """Feeds of the allow-listed topics, and a cap on subscribers across them."""

    def __init__(
        self,
        clients: KafkaClients,
        consumer_config: dict[str, Any],
        topics: frozenset[str],
        *,
        max_streams: int,
        buffer: int,
        timeout: float,
        metrics: GatewayMetrics,
        keepalive: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._clients = clients
        self._config = consumer_config
        self._topics = topics
        self._max_streams = max_streams
        self._buffer = buffer
        self._timeout = timeout
        self._metrics = metrics
        self._feeds: dict[str, TopicFeed] = {}
        self._closing_feeds: set[asyncio.Task[None]] = set()
        self._closing = False
        self._keepalive = keepalive
        self._ticker: asyncio.Task[None] | None = None
        metrics.stream_subscribers.set_function(lambda: self.open_streams)

    @property
    def open_streams(self) -> int:
        """Subscriptions open right now."""
        return sum(len(feed.subscribers) for feed in self._feeds.values())

    async def subscribe(self, topic: str) -> Subscription:
        """A subscription to ``topic`` from now on, once its feed is positioned.

        Raises:
            UnknownTopicError: the topic is not allow-listed or does not exist.
            UnavailableError: `max_streams` subscriptions are open, or the gateway is stopping.
        """
        if topic not in self._topics:
            raise UnknownTopicError(f"topic {topic!r} is not open for streaming")
        if self._closing or self.open_streams >= self._max_streams:
            raise UnavailableError("too many open streams", retry_after=5)
        feed = self._feeds.get(topic)
        if feed is None or feed.stopped.done():
            config = {**self._config, "group.id": f"rpc-gateway-stream-{uuid.uuid4().hex}"}
            feed = self._feeds[topic] = TopicFeed(
                self._clients.consumer(config), topic, self._timeout, self._metrics
            )
            feed.stopped.add_done_callback(lambda _: self._stopped(feed))
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().create_task(self._tick(), name="stream-keepalive")
        subscription = Subscription(feed, self._buffer)
        feed.subscribers.add(subscription)  # counted against the cap while the feed starts
        try:
            await asyncio.shield(feed.started)
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """End ``subscription``; the feed stops with its last subscriber."""
        subscription.end()
        feed = subscription.feed
        feed.subscribers.discard(subscription)
        if not feed.subscribers and self._feeds.get(feed.topic) is feed:
            del self._feeds[feed.topic]
            closing = asyncio.get_running_loop().create_task(feed.close(), name=f"close-feed-{feed.topic}")
            self._closing_feeds.add(closing)
            closing.add_done_callback(self._closing_feeds.discard)

    def _stopped(self, feed: TopicFeed) -> None:
        # The consumer failed or was closed: its subscribers end; a new subscriber starts a new feed.
        for subscriber in feed.subscribers:
            subscriber.end()
        if self._feeds.get(feed.topic) is feed:
            del self._feeds[feed.topic]

    async def _tick(self) -> None:
        """Every ``keepalive`` seconds, nudge the subscribers that got nothing since the last tick."""
        while True:
            await asyncio.sleep(self._keepalive)  # the keepalive period itself, not synchronisation
            for feed in list(self._feeds.values()):
                for subscriber in feed.subscribers:
                    if subscriber.quiet:
                        subscriber.nudge()
                    subscriber.quiet = True

    async def close(self) -> None:
        """At shutdown: end every subscription and close every consumer."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(feed.close() for feed in feeds), *self._closing_feeds)

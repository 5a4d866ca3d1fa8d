"""`ReplyListener` reads this replica's reply partition; `ReplyRouter` resolves the waiting futures.

The consumer is ``assign()``ed one partition (no group, so no rebalances) at the
partition's high watermark, read *before* the listener reports `positioned`: every
reply to a request sent after that is read. A `Fetcher` owns the consumer: its thread
positions it, fetches, and hands each batch to the loop with one ``call_soon_threadsafe``,
where `ReplyRouter` matches replies to requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

import confluent_kafka

from kafkarpc import protocol, stamps
from kafkarpc.errors import ProtocolError
from kafkarpc.fetcher import Fetcher
from kafkarpc.startup import retrying

from .parts import PartStream

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, Message

    from .correlation import CorrelationIds
    from .metrics import GatewayMetrics
    from .pending import PendingReplies

log = logging.getLogger(__name__)


class ReplyRouter:
    """Event loop side: match replies to pending requests and streams; drop and count the rest.

    The first record of a streamed reply resolves its request like a whole reply and opens
    a `PartStream` (in the same batch, so the parts right behind it are not taken for late
    ones); the records after it go to that stream until the caller closes it.
    """

    def __init__(
        self,
        pending: PendingReplies[protocol.Reply],
        ids: CorrelationIds,
        metrics: GatewayMetrics,
        *,
        timing: bool = False,
        part_buffer: int = 256,
    ) -> None:
        self._pending = pending
        self._ids = ids
        self._metrics = metrics
        self._timing = timing
        self._part_buffer = part_buffer
        self._streams: dict[str, PartStream] = {}
        self._detached: dict[str, None] = {}
        """respond-async requests nobody here waits for any more, oldest first (bounded)."""
        self._detached_limit = pending.capacity

    def detach(self, correlation_id: str) -> None:
        """A respond-async request's caller has its 202: its reply is read from the topic by
        whichever replica is asked, so here it is expected, and neither late nor counted."""
        self._detached[correlation_id] = None
        if len(self._detached) > self._detached_limit:
            del self._detached[next(iter(self._detached))]

    def stream(self, correlation_id: str) -> PartStream | None:
        """The open stream whose first record answered ``correlation_id``, if any."""
        return self._streams.get(correlation_id)

    def route(self, batch: Sequence[Message], fetched_at: float) -> None:
        """Resolve the waiter of each reply in ``batch``; never raises on a bad record.

        ``fetched_at`` (epoch seconds) is when the consumer thread got the batch; with timing on,
        every reply gets it and the routing time stamped.
        """
        routed_at: float | None = None
        touched: set[PartStream] = set()
        for message in batch:
            headers = message.headers()
            try:
                reply = protocol.Reply.from_record(message.value(), headers)
            except ProtocolError as exc:
                self._metrics.malformed_replies.inc()
                log.warning(
                    "malformed reply dropped",
                    extra={
                        "reason": str(exc),
                        "reply_for": protocol.correlation_id_of(headers),
                        "offset": message.offset(),
                    },
                )
                continue
            if self._timing:
                # Stamped even when the worker sent no rpc-timing: the gateway's own stages still count.
                routed_at = routed_at or time.time()
                timing = stamps.stamp(reply.timing, "reply_fetched", fetched_at)
                reply = dataclasses.replace(reply, timing=stamps.stamp(timing, "reply_routed", routed_at))
            if reply.sequence is not None:
                stream = self._streams.get(reply.correlation_id)
                if stream is not None:
                    stream.push(reply)
                    touched.add(stream)
                    continue
            if self._pending.resolve(reply.correlation_id, reply):
                if reply.streaming:
                    self._open(reply)
                continue
            if reply.correlation_id in self._detached:
                if reply.final:
                    del self._detached[reply.correlation_id]
                continue
            if self._ids.issued(reply.correlation_id):
                self._metrics.late_replies.inc()
                log.info("late reply dropped", extra={"reply_for": reply.correlation_id})
            else:
                # Expected when replicas share the partition, so not worth more than DEBUG.
                self._metrics.unmatched_replies.inc()
                log.debug("reply for another instance dropped", extra={"reply_for": reply.correlation_id})
        for stream in touched:
            stream.settle()

    def _open(self, first: protocol.Reply) -> None:
        self._streams[first.correlation_id] = PartStream(
            first, self._part_buffer, partial(self._forget, first.correlation_id)
        )

    def _forget(self, correlation_id: str) -> None:
        self._streams.pop(correlation_id, None)


class ReplyListener:
    """Owns the reply consumer through a `Fetcher`; construct it on the event loop.

    Args:
        client: The consumer, built from `GatewaySettings.consumer_config`.
        on_batch: `ReplyRouter.route`.
        batch_size: Most replies handed to the loop at once.
        timeout: Seconds the watermark request may take (retried until it answers).
    """

    def __init__(
        self,
        client: ConsumerClient,
        *,
        on_batch: Callable[[Sequence[Message], float], None],
        batch_size: int,
        timeout: float,
    ) -> None:
        self._on_batch = on_batch
        self._fetcher = Fetcher(client, name="rpcgw-replies", on_batch=self._route, batch_size=batch_size)
        self._timeout = timeout
        self.positioned = asyncio.Event()
        """Set once the consumer is assigned and positioned; replies from then on are seen."""
        self.partition: int | None = None
        """The reply partition read, once started."""
        self.offset = 0
        """An offset of that partition no reply to a request produced from now on can precede:
        the next one to read (a result location's lower bound)."""

    @property
    def running(self) -> bool:
        """Positioned and its thread still fetching."""
        return self.positioned.is_set() and self._fetcher.alive

    async def start(self, topic: str, partition: int) -> None:
        """Position at the high watermark of ``topic``/``partition`` and start fetching.

        The watermark request is retried (with backoff, logged) until the broker answers or
        `stop` is called; returns once positioned.
        """
        self.partition = partition
        self._fetcher.start(lambda client: self._position(client, topic, partition))
        await asyncio.shield(self._fetcher.started)
        self.positioned.set()

    async def stop(self) -> None:
        """Stop fetching and close the consumer; idempotent. A start still retrying gives up."""
        self.positioned.clear()
        try:
            await self._fetcher.close()
        except Exception:
            log.warning("the reply consumer had failed", exc_info=True)

    def _route(self, batch: Sequence[Message], fetched_at: float) -> None:
        if batch:
            self.offset = max(self.offset, (batch[-1].offset() or 0) + 1)
        self._on_batch(batch, fetched_at)

    def _position(self, client: ConsumerClient, topic: str, partition: int) -> None:
        tp = confluent_kafka.TopicPartition(topic, partition)
        high = -1
        for attempt in retrying(lambda: self._fetcher.stopping):
            with attempt:
                watermarks = client.get_watermark_offsets(tp, timeout=self._timeout)
                if watermarks is None:
                    raise TimeoutError(f"no watermarks for {topic}[{partition}]")
                high = watermarks[1]
        self.offset = high
        client.assign([confluent_kafka.TopicPartition(topic, partition, high)])
        log.info("reply consumer positioned", extra={"topic": topic, "partition": partition, "offset": high})

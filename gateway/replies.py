"""`ReplyListener`: one thread reads this replica's reply partition and hands batches to the loop.

The consumer is ``assign()``ed one partition (no group, so no rebalances) at the
partition's high watermark, read *before* the listener reports `positioned`: every
reply to a request sent after that is read. The thread fetches with `next_batch`, which
returns at the first record without holding the GIL while it waits. Each batch crosses
to the loop with one ``call_soon_threadsafe``, where `ReplyRouter` resolves futures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

import confluent_kafka

from kafkarpc import protocol
from kafkarpc.batches import next_batch

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from .correlation import CorrelationIds
    from .kafka import KafkaClients, KafkaConsumer
    from .metrics import GatewayMetrics
    from .pending import PendingReplies

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""Longest a poll() waits when idle, so stop() is noticed; a record ends the wait at once."""


class ReplyRouter:
    """Event loop side: match replies to pending requests; drop and count the rest."""

    def __init__(
        self,
        pending: PendingReplies[protocol.Reply],
        ids: CorrelationIds,
        metrics: GatewayMetrics,
        *,
        timing: bool = False,
    ) -> None:
        self._pending = pending
        self._ids = ids
        self._metrics = metrics
        self._timing = timing

    def route(self, batch: Sequence[Message], fetched_at: float) -> None:
        """Resolve the waiter of each reply in ``batch``; never raises on a bad record.

        ``fetched_at`` (epoch seconds) is when the consumer thread got the batch; replies
        carrying ``rpc-timing`` get it and the routing time stamped when timing is on.
        """
        routed_at: float | None = None
        for message in batch:
            error = message.error()
            if error is not None:
                log.warning("reply consumer error", extra={"error": str(error)})
                continue
            # Consumed records always carry a list of (str, bytes) pairs; the stub's type is wider.
            headers = cast("list[tuple[str, bytes | None]] | None", message.headers())
            try:
                reply = protocol.Reply.from_record(message.value(), headers)
            except protocol.ProtocolError as exc:
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
            if self._timing and reply.timing:
                routed_at = routed_at or time.time()
                timing = protocol.stamp(reply.timing, "reply_fetched", fetched_at)
                reply = dataclasses.replace(reply, timing=protocol.stamp(timing, "reply_routed", routed_at))
            if self._pending.resolve(reply.correlation_id, reply):
                continue
            if self._ids.issued(reply.correlation_id):
                self._metrics.late_replies.inc()
                log.info("late reply dropped", extra={"reply_for": reply.correlation_id})
            else:
                # Expected when replicas share the partition, so not worth more than DEBUG.
                self._metrics.unmatched_replies.inc()
                log.debug("reply for another instance dropped", extra={"reply_for": reply.correlation_id})


class ReplyListener:
    """Owns the reply consumer and its thread; construct it on the event loop."""

    def __init__(
        self,
        *,
        clients: KafkaClients,
        config: dict[str, Any],
        on_batch: Callable[[Sequence[Message], float], None],
        metrics: GatewayMetrics,
        batch_size: int,
        on_kafka_error: Callable[[KafkaError], None],
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer: KafkaConsumer = clients.consumer(
            {**config, "error_cb": on_kafka_error, "logger": log}
        )
        self._on_batch = on_batch
        self._metrics = metrics
        self._batch_size = batch_size
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.positioned = asyncio.Event()
        """Set once the consumer is assigned and positioned; replies from then on are seen."""
        self.partition: int | None = None
        """The reply partition read, once started."""

    @property
    def client(self) -> KafkaConsumer:
        """The underlying consumer, for metadata calls."""
        return self._consumer

    def start(self, topic: str, partition: int, timeout: float) -> None:
        """Position at the high watermark of ``topic``/``partition`` and start the consume thread.

        Blocking (one watermark request); call it through ``asyncio.to_thread``.
        `positioned` is set from the loop once the thread starts consuming.
        """
        watermarks = self._consumer.get_watermark_offsets(
            confluent_kafka.TopicPartition(topic, partition), timeout=timeout
        )
        if watermarks is None:
            raise TimeoutError(f"no watermarks for {topic}[{partition}]")
        high = watermarks[1]
        self._consumer.assign([confluent_kafka.TopicPartition(topic, partition, high)])
        self.partition = partition
        self._running.set()
        self._thread = threading.Thread(
            target=self._consume_forever, args=(topic, partition), name="rpcgw-replies", daemon=True
        )
        self._thread.start()
        log.info("reply consumer positioned", extra={"topic": topic, "partition": partition, "offset": high})

    def stop(self) -> None:
        """Stop the thread and close the consumer; idempotent. Blocking."""
        thread, self._thread = self._thread, None
        self._running.clear()
        if thread is not None:
            thread.join()
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def _consume_forever(self, topic: str, partition: int) -> None:
        self._loop_call(self.positioned.set)
        tp = confluent_kafka.TopicPartition(topic, partition)
        while self._running.is_set():
            batch = next_batch(self._consumer, self._batch_size, POLL_SECONDS)
            if not batch:
                continue
            self._loop_call(self._on_batch, batch, time.time())
            last = batch[-1].offset()
            watermarks = self._consumer.get_watermark_offsets(tp, cached=True)
            if watermarks is not None and last is not None:
                self._metrics.reply_consumer_lag.set(max(watermarks[1] - last - 1, 0))

    def _loop_call(self, callback: Callable[..., object], *args: object) -> None:
        self._loop.call_soon_threadsafe(callback, *args)

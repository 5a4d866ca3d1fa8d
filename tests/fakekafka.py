"""An in-memory Kafka behind the client Protocols of `kafkarpc.clients`, for the unit tiers.

`FakeKafka` is the cluster and also the `KafkaClients` factory, so the gateway and the
worker run their real producer threads, fetch threads, hand-offs, offset tracking and
rebalance handling on it. Records are real ``confluent_kafka.Message`` objects; waits are
on one condition variable, never on sleeps. Switches inject failures: brokers down, a full
producer queue, delivery errors, topics that refuse records.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, cast

import confluent_kafka
from confluent_kafka import OFFSET_INVALID, KafkaError, KafkaException, TopicPartition

from kafkarpc.clients import Message

Headers = Sequence[tuple[str, bytes | None]]
Partition = tuple[str, int]


def record(
    topic: str,
    partition: int,
    offset: int = -1,
    value: bytes | None = None,
    *,
    key: bytes | None = None,
    headers: Headers | None = None,
) -> Message:
    """A real ``confluent_kafka.Message``, typed as the Protocol the code under test reads."""
    message = confluent_kafka.Message(
        topic=topic, partition=partition, offset=offset, key=key, value=value, headers=list(headers or [])
    )
    return cast("Message", message)


class FakeKafka:
    """Topic logs, committed offsets, failure switches, and the clients built on them."""

    def __init__(self, topics: dict[str, int] | None = None) -> None:
        self.logs: dict[Partition, list[Message]] = {}
        self.counts: dict[str, int] = {}
        self.committed: dict[tuple[str, str, int], int] = {}
        self.changed = threading.Condition()
        """Notified on every change; waits in tests and fakes use it."""
        self.down = False
        """Metadata and watermark requests fail as if no broker answered."""
        self.hung = False
        """The brokers answer nothing (a stopped process): metadata requests time out and produced
        records stay queued in their producer until it is polled after the hang, or purged."""
        self.watermarks_time_out = False
        self.forbidden: set[str] = set()
        """Topics whose metadata the ACLs refuse (TOPIC_AUTHORIZATION_FAILED), as a secured broker does."""
        """Watermark queries raise librdkafka's timeout, as a busy real broker makes them."""
        self.queue_full = False
        """``produce()`` raises BufferError."""
        self.delivery_error: KafkaError | None = None
        """Every produce gets this delivery error and writes nothing."""
        self.refused: set[str] = set()
        """Topics whose produces fail with ``_UNKNOWN_TOPIC``."""
        self.calls: Counter[str] = Counter()
        """Requests served so far: ``metadata <topic>``, ``watermarks``, ``consume``."""
        self.held: set[str] = set()
        """Requests (as in `calls`) that, once answered, wait for `release` before returning."""
        self.producers: list[FakeProducer] = []
        self.consumers: list[FakeConsumer] = []
        for name, count in (topics or {}).items():
            self.create_topic(name, count)

    # The KafkaClients Protocol.
    def producer(self, config: dict[str, Any]) -> FakeProducer:
        """A producer on this cluster."""
        return FakeProducer(self, config)

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        """A consumer on this cluster."""
        return FakeConsumer(self, config)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        """Create ``name`` with empty partitions."""
        with self.changed:
            self.counts[name] = partitions
            for number in range(partitions):
                self.logs[(name, number)] = []

    def append(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int = -1,
    ) -> Message:
        """Write a record, as a producer outside the system under test would."""
        with self.changed:
            if partition < 0:
                partition = hash(key) % self.counts[topic] if key else 0
            log = self.logs[(topic, partition)]
            message = record(topic, partition, len(log), value, key=key, headers=headers)
            log.append(message)
            self.changed.notify_all()
            return message

    def records(self, topic: str) -> list[Message]:
        """Every record of ``topic``, partition by partition."""
        with self.changed:
            return [m for (name, _), log in sorted(self.logs.items()) if name == topic for m in log]

    def hold(self, request: str) -> None:
        """Make answered ``request``s wait (a slow network) until `release`."""
        with self.changed:
            self.held.add(request)

    def release(self, request: str) -> None:
        """Let held ``request``s return."""
        with self.changed:
            self.held.discard(request)
            self.changed.notify_all()

    def served(self, request: str) -> None:
        """Count a request, then wait while it is held."""
        with self.changed:
            self.calls[request] += 1
            self.changed.notify_all()
            self.changed.wait_for(lambda: request not in self.held)

    def metadata(self, topic: str | None) -> SimpleNamespace:
        """``list_topics()``'s answer, as of the call (`hold` delays it); raises when the cluster is down."""
        down, hung = self.down, self.hung
        self.served(f"metadata {topic}")
        if down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        if hung:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT))
        topics = {}
        for name in [topic] if topic is not None else list(self.counts):
            if name in self.forbidden:
                error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
                topics[name] = SimpleNamespace(topic=name, partitions={}, error=error)
            elif name in self.counts:
                partitions = {p: SimpleNamespace(id=p) for p in range(self.counts[name])}
                topics[name] = SimpleNamespace(topic=name, partitions=partitions, error=None)
            else:
                error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                topics[name] = SimpleNamespace(topic=name, partitions={}, error=error)
        return SimpleNamespace(topics=topics)

    def error_event(self, error: KafkaError) -> None:
        """Deliver ``error`` to every client's ``error_cb``, as librdkafka does."""
        configs = [client.config for client in self.producers] + [client.config for client in self.consumers]
        for config in configs:
            callback = config.get("error_cb")
            if callback is not None:
                callback(error)

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        """Record a group's committed position."""
        with self.changed:
            self.committed[(group, topic, partition)] = offset
            self.changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within: float = 10.0) -> None:
        """Wait until ``predicate()`` holds (checked on every change), or fail after ``within`` seconds."""

        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(predicate, within)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"condition not met within {within} s")


class FakeProducer:
    """confluent ``Producer``: records are written at once, delivery reports served by poll()."""

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka = kafka
        self.config = config
        self.produced = 0
        self.queued: list[
            tuple[Callable[..., None] | None, str, bytes | None, bytes | None, int, Headers | None]
        ] = []
        """Records produced while the cluster hung, not yet sent."""
        self.purges: list[tuple[bool, bool]] = []
        """``(in_queue, in_flight)`` of every purge() call."""
        self._reports: queue.SimpleQueue[tuple[Callable[..., None], KafkaError | None, Message]] = (
            queue.SimpleQueue()
        )
        kafka.producers.append(self)

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        *,
        on_delivery: Callable[..., None] | None = None,
        headers: Headers | None = None,
    ) -> None:
        kafka = self.kafka
        if any(not isinstance(v, bytes | str | None) for _, v in headers or ()):
            raise TypeError("Expected bytes, str or None as header value")  # as confluent-kafka does
        if kafka.queue_full:
            raise BufferError("Local: Queue full")
        if kafka.hung:
            self.queued.append((on_delivery, topic, value, key, partition, headers))
            return
        error = kafka.delivery_error
        if error is None and (topic not in kafka.counts or topic in kafka.refused):
            error = KafkaError(KafkaError._UNKNOWN_TOPIC)
        elif error is None and partition >= kafka.counts[topic]:
            error = KafkaError(KafkaError._UNKNOWN_PARTITION)
        if error is None:
            message = kafka.append(topic, value, key=key, headers=headers, partition=partition)
            self.produced += 1
        else:
            message = record(topic, partition, value=value, key=key)
        report = on_delivery or self.config.get("on_delivery")
        if report is not None:
            self._reports.put((report, error, message))

    def poll(self, timeout: float = -1) -> int:
        if self.queued and not self.kafka.hung:
            queued, self.queued = self.queued, []
            for on_delivery, topic, value, key, partition, headers in queued:
                self.produce(topic, value, key, partition, on_delivery=on_delivery, headers=headers)
        try:
            served = [self._reports.get(timeout=max(timeout, 0))]
        except queue.Empty:
            return 0
        while True:
            try:
                served.append(self._reports.get_nowait())
            except queue.Empty:
                break
        for report, error, message in served:
            report(error, message)
        return len(served)

    def flush(self, timeout: float = -1) -> int:
        while self.poll(0):
            pass
        return 0

    def __len__(self) -> int:
        return len(self.queued) + self._reports.qsize()

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return self.kafka.metadata(topic)

    def purge(self, in_queue: bool = True, in_flight: bool = True, blocking: bool = True) -> None:
        self.purges.append((in_queue, in_flight))
        if in_queue:
            queued, self.queued = self.queued, []
            for on_delivery, topic, value, key, partition, _ in queued:
                report = on_delivery or self.config.get("on_delivery")
                if report is not None:
                    purged = KafkaError(KafkaError._PURGE_QUEUE)
                    self._reports.put((report, purged, record(topic, partition, value=value, key=key)))


class FakeConsumer:
    """confluent ``Consumer``: ``assign()`` mode, or a group member owning every partition.

    A group member's rebalance callbacks run inside ``consume()`` on the calling thread, as
    librdkafka's do; partitions are assigned after ``on_assign`` unless it assigned them.
    """

    def __init__(self, kafka: FakeKafka, config: dict[str, Any]) -> None:
        self.kafka = kafka
        self.config = config
        self.group = str(config.get("group.id", ""))
        self.positions: dict[Partition, int] = {}
        """Assigned partitions and the next offset to fetch from each."""
        self.stored: dict[Partition, int] = {}
        self.paused: set[Partition] = set()
        self.pause_calls = 0
        self.seeks: list[tuple[str, int, int]] = []
        """(topic, partition, offset) of each seek()."""
        self.closed = False
        self.used_after_close: list[str] = []
        """Calls made after close(): each one a bug in the code under test."""
        self.revoking = threading.Event()
        """Set when a revocation callback starts."""
        self._callbacks: dict[str, Callable[..., None]] = {}
        self._events: list[tuple[str, list[Partition]]] = []
        self._assigned_in_callback = False
        self._lock = threading.Lock()
        kafka.consumers.append(self)

    # Assignment.
    def assign(self, partitions: list[TopicPartition]) -> None:
        self._check_open("assign")
        self._assigned_in_callback = True
        with self.kafka.changed:
            self.positions = {(tp.topic, tp.partition): self._start(tp) for tp in partitions}

    def incremental_assign(self, partitions: list[TopicPartition]) -> None:
        self._check_open("incremental_assign")
        self._assigned_in_callback = True
        with self.kafka.changed:
            for tp in partitions:
                self.positions[(tp.topic, tp.partition)] = self._start(tp)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[..., None] = print,
        on_revoke: Callable[..., None] = print,
        on_lost: Callable[..., None] = print,
    ) -> None:
        self._callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}
        with self.kafka.changed:
            partitions = [(t, p) for t in topics for p in range(self.kafka.counts[t])]
        self._events.append(("assign", partitions))

    # Test hooks: a rebalance served at the next consume(), like a cooperative one.
    def revoke(self, partitions: list[Partition]) -> None:
        """Revoke ``partitions``."""
        self._event("revoke", partitions)

    def assign_again(self, partitions: list[Partition]) -> None:
        """Assign ``partitions`` (again)."""
        self._event("assign", partitions)

    # Fetching.
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        # Like librdkafka: wait until num_messages records are there (or an event) or the timeout ends.
        self._check_open("consume")
        self._serve_events()
        self._auto_commit()
        with self.kafka.changed:
            self.kafka.changed.wait_for(
                lambda: self._available() >= num_messages or bool(self._events) or self.closed,
                max(timeout, 0),
            )
            batch: list[Message] = []
            for tp, position in self.positions.items():
                if tp in self.paused:
                    continue
                take = self.kafka.logs[tp][position : position + num_messages - len(batch)]
                self.positions[tp] = position + len(take)
                batch.extend(take)
            self.kafka.calls["consume"] += 1
            self.kafka.changed.notify_all()
        return batch

    def poll(self, timeout: float = -1) -> Message | None:
        batch = self.consume(1, timeout)
        return batch[0] if batch else None

    def pause(self, partitions: list[TopicPartition]) -> None:
        with self.kafka.changed:
            self.pause_calls += 1
            # Like librdkafka, only partitions currently assigned are paused.
            self.paused.update(tp for t in partitions if (tp := (t.topic, t.partition)) in self.positions)
            self.kafka.changed.notify_all()

    def resume(self, partitions: list[TopicPartition]) -> None:
        with self.kafka.changed:
            self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)
            self.kafka.changed.notify_all()

    def position(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        with self.kafka.changed:
            return [
                TopicPartition(
                    tp.topic, tp.partition, self.positions.get((tp.topic, tp.partition), OFFSET_INVALID)
                )
                for tp in partitions
            ]

    def seek(self, partition: TopicPartition) -> None:
        tp = (partition.topic, partition.partition)
        with self.kafka.changed:
            if tp not in self.positions:
                raise KafkaException(KafkaError(KafkaError._STATE, "partition not assigned"))
            self.seeks.append((partition.topic, partition.partition, partition.offset))
            self.positions[tp] = partition.offset
            self.kafka.changed.notify_all()

    # Offsets.
    def store_offsets(self, *, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            if (tp.topic, tp.partition) not in self.positions:
                raise KafkaException(KafkaError(KafkaError._STATE, "partition not assigned"))
            with self._lock:
                self.stored[(tp.topic, tp.partition)] = tp.offset

    def commit(self, *, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        for tp in offsets:
            self.kafka.commit(self.group, tp.topic, tp.partition, tp.offset)

    # Metadata.
    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int] | None:
        self._check_open("get_watermark_offsets")
        if self.kafka.watermarks_time_out and not cached:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "Failed to get watermark offsets"))
        if self.kafka.down and not cached:
            return None
        with self.kafka.changed:
            high = len(self.kafka.logs[(partition.topic, partition.partition)])
        if not cached:
            self.kafka.served("watermarks")
        return 0, high

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self._check_open("list_topics")
        return self.kafka.metadata(topic)

    def close(self) -> None:
        if self.closed:
            return
        if self._callbacks:
            self._callbacks["on_revoke"](self, self.assignment())
            self._auto_commit()
        with self.kafka.changed:
            self.positions = {}
            self.closed = True
            self.kafka.changed.notify_all()

    def _check_open(self, call: str) -> None:
        if self.closed:
            self.used_after_close.append(call)
            raise RuntimeError("Consumer closed")

    def _start(self, tp: TopicPartition) -> int:
        if tp.offset >= 0:
            return int(tp.offset)
        return self.kafka.committed.get((self.group, tp.topic, tp.partition), 0)

    def _event(self, kind: str, partitions: list[Partition]) -> None:
        with self.kafka.changed:
            self._events.append((kind, partitions))
            self.kafka.changed.notify_all()

    def _serve_events(self) -> None:
        while self._events:
            kind, partitions = self._events.pop(0)
            tps = [TopicPartition(t, p) for t, p in partitions]
            if kind == "assign":
                self._assigned_in_callback = False
                self._callbacks["on_assign"](self, tps)
                if not self._assigned_in_callback:
                    self.incremental_assign(tps)
            else:
                self.revoking.set()
                self._callbacks["on_revoke"](self, tps)
                self._auto_commit()
                with self.kafka.changed:
                    for tp in partitions:
                        self.positions.pop(tp, None)
                        self.paused.discard(tp)

    def _available(self) -> int:
        return sum(
            len(self.kafka.logs[tp]) - position
            for tp, position in self.positions.items()
            if tp not in self.paused
        )

    def _auto_commit(self) -> None:
        with self._lock:
            stored, self.stored = self.stored, {}
        for (topic, partition), offset in stored.items():
            self.kafka.commit(self.group, topic, partition, offset)

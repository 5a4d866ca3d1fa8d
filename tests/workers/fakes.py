"""In-memory Kafka for unit tests: the broker, and Consumer/Producer fakes with confluent's API.

They implement `kafkarpc.clients.ConsumerClient`/`ProducerClient`, so the Worker under test
runs its real consumer thread, producer thread, offset tracking and hand-offs. Rebalance
callbacks are served inside ``consume()`` on the consumer thread, as librdkafka does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

Headers = list[tuple[str, bytes | None]]


@dataclass
class FakeError:
    """Stands in for confluent's KafkaError."""

    text: str
    is_fatal: bool = False

    def fatal(self) -> bool:
        return self.is_fatal

    def __str__(self) -> str:
        return self.text


@dataclass
class FakeMessage:
    """A stored record with confluent's Message accessors."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None
    _key: bytes | None = None
    _headers: Headers | None = None
    _error: FakeError | None = None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> Headers | None:
        return self._headers

    def error(self) -> FakeError | None:
        return self._error


@dataclass
class FakeBroker:
    """Topics, committed offsets and a condition every change notifies."""

    topics: dict[str, list[list[FakeMessage]]] = field(default_factory=dict)
    committed: dict[tuple[str, str, int], int] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        with self.changed:
            self.topics[name] = [[] for _ in range(partitions)]

    def append(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None, partition: int = -1
    ) -> FakeMessage:
        with self.changed:
            if topic not in self.topics or topic in self.refused:
                raise KafkaException(FakeError(f"unknown topic {topic}"))
            partitions = self.topics[topic]
            number = partition if partition >= 0 else hash(key) % len(partitions)
            if number >= len(partitions):
                raise KafkaException(FakeError(f"unknown partition {topic}/{number}"))
            log = partitions[number]
            message = FakeMessage(topic, number, len(log), value, key, headers)
            log.append(message)
            self.changed.notify_all()
            return message

    def records(self, topic: str) -> list[FakeMessage]:
        with self.changed:
            return [m for partition in self.topics.get(topic, []) for m in partition]

    def commit(self, group: str, topic: str, partition: int, offset: int) -> None:
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


class FakeConsumer:
    """A group consumer that owns every partition of its topics until told otherwise."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self.group = str(config["group.id"])
        self.assigned: list[tuple[str, int]] = []
        self.positions: dict[tuple[str, int], int] = {}
        self.stored: dict[tuple[str, int], int] = {}
        self.paused: set[tuple[str, int]] = set()
        self.pause_calls = 0
        self.closed = False
        self.revoking = threading.Event()  # set when a revocation callback starts
        self._callbacks: dict[str, Callable[..., None]] = {}
        self._events: list[tuple[str, list[tuple[str, int]]]] = []
        self._lock = threading.Lock()

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[..., None] = print,
        on_revoke: Callable[..., None] = print,
        on_lost: Callable[..., None] = print,
    ) -> None:
        self._callbacks = {"on_assign": on_assign, "on_revoke": on_revoke, "on_lost": on_lost}
        with self.broker.changed:
            partitions = [(t, p) for t in topics for p in range(len(self.broker.topics[t]))]
        self._events.append(("assign", partitions))

    def revoke(self, partitions: list[tuple[str, int]]) -> None:
        """Test hook: revoke at the next consume(), like a cooperative rebalance."""
        with self.broker.changed:
            self._events.append(("revoke", partitions))
            self.broker.changed.notify_all()

    def assign_again(self, partitions: list[tuple[str, int]]) -> None:
        """Test hook: assign at the next consume()."""
        with self.broker.changed:
            self._events.append(("assign", partitions))
            self.broker.changed.notify_all()

    def _serve_events(self) -> None:
        while self._events:
            kind, partitions = self._events.pop(0)
            tps = [TopicPartition(t, p) for t, p in partitions]
            if kind == "assign":
                self._callbacks["on_assign"](self, tps)
                for tp in partitions:
                    self.positions[tp] = self.broker.committed.get((self.group, *tp), 0)
                    self.assigned.append(tp)
            else:
                self.revoking.set()
                self._callbacks["on_revoke"](self, tps)
                self._auto_commit()
                self.assigned = [tp for tp in self.assigned if tp not in partitions]

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        # Like librdkafka: wait until num_messages records are there (or an event) or the timeout ends.
        assert not self.closed
        self._serve_events()
        self._auto_commit()
        with self.broker.changed:
            self.broker.changed.wait_for(lambda: self._available() >= num_messages or self._events, timeout)
            batch: list[FakeMessage] = []
            for tp in self.assigned:
                if tp in self.paused:
                    continue
                log = self.broker.topics[tp[0]][tp[1]]
                take = log[self.positions[tp] : self.positions[tp] + num_messages - len(batch)]
                self.positions[tp] += len(take)
                batch.extend(take)
        return batch

    def poll(self, timeout: float = -1) -> FakeMessage | None:
        batch = self.consume(1, timeout)
        return batch[0] if batch else None

    def _available(self) -> int:
        return sum(
            len(self.broker.topics[t][p]) - self.positions[(t, p)]
            for t, p in self.assigned
            if (t, p) not in self.paused
        )

    def _auto_commit(self) -> None:
        with self._lock:
            stored, self.stored = dict(self.stored), {}
        for (topic, partition), offset in stored.items():
            self.broker.commit(self.group, topic, partition, offset)

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            if (tp.topic, tp.partition) not in self.assigned:
                raise KafkaException(FakeError("partition not assigned"))
            with self._lock:
                self.stored[(tp.topic, tp.partition)] = tp.offset

    def commit(self, offsets: list[TopicPartition], asynchronous: bool = True) -> None:
        for tp in offsets:
            self.broker.commit(self.group, tp.topic, tp.partition, tp.offset)

    def pause(self, partitions: list[TopicPartition]) -> None:
        with self.broker.changed:
            self.pause_calls += 1
            self.paused.update((tp.topic, tp.partition) for tp in partitions)
            self.broker.changed.notify_all()

    def resume(self, partitions: list[TopicPartition]) -> None:
        with self.broker.changed:
            self.paused.difference_update((tp.topic, tp.partition) for tp in partitions)
            self.broker.changed.notify_all()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.assigned]

    def close(self) -> None:
        self._callbacks["on_revoke"](self, self.assignment())
        self._auto_commit()
        with self.broker.changed:
            self.assigned = []
            self.closed = True
            self.broker.changed.notify_all()


class FakeProducer:
    """A producer whose records land in the broker when poll() serves their delivery reports."""

    def __init__(self, broker: FakeBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.config = config
        self._queue: list[tuple[str, bytes | None, bytes | None, Headers | None, int, Any]] = []

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int = -1,
        on_delivery: Callable[[Any, Any], None] | None = None,
        headers: Headers | None = None,
    ) -> None:
        with self.broker.changed:
            self._queue.append((topic, value, key, headers, partition, on_delivery))
            self.broker.changed.notify_all()

    def poll(self, timeout: float = -1) -> int:
        with self.broker.changed:
            self.broker.changed.wait_for(lambda: self._queue, timeout)
            queue, self._queue = self._queue, []
        for topic, value, key, headers, partition, on_delivery in queue:
            try:
                message: FakeMessage | None = self.broker.append(topic, value, key, headers, partition)
                error = None
            except KafkaException as exc:
                message, error = None, exc.args[0]
            if on_delivery is not None:
                on_delivery(error, message)
        return len(queue)

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return 0

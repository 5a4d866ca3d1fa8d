"""An in-memory Kafka behind the same client Protocols the gateway uses in production.

`FakeCluster` keeps topic logs; `FakeProducer`/`FakeConsumer` implement the
confluent calls the gateway makes (produce/poll/flush, assign/consume/watermarks,
list_topics) with real ``Message``/``KafkaError`` objects, and block on a condition
variable rather than sleeping. `FakeWorker` answers requests with `kafkarpc.protocol`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from kafkarpc import protocol


@dataclass
class FakeCluster:
    """Topic logs plus switches for failures."""

    partitions: dict[str, int]
    logs: dict[tuple[str, int], list[Message]] = field(default_factory=dict)
    condition: threading.Condition = field(default_factory=threading.Condition)
    down: bool = False
    """Metadata calls fail as if no broker answered."""
    queue_full: bool = False
    """produce() raises BufferError."""
    delivery_error: KafkaError | None = None
    """Every produce gets this delivery error and writes nothing."""
    producers: list[FakeProducer] = field(default_factory=list)
    consumers: list[FakeConsumer] = field(default_factory=list)

    def __post_init__(self) -> None:
        for topic, count in self.partitions.items():
            for partition in range(count):
                self.logs[(topic, partition)] = []

    def append(
        self, topic: str, partition: int, key: bytes | None, value: bytes | None, headers: Any
    ) -> Message:
        with self.condition:
            log = self.logs[(topic, partition)]
            message = Message(
                topic=topic, partition=partition, offset=len(log), key=key, value=value, headers=headers
            )
            log.append(message)
            self.condition.notify_all()
            return message

    def records(self, topic: str) -> list[Message]:
        with self.condition:
            return [m for (t, _), log in sorted(self.logs.items()) if t == topic for m in log]

    def metadata(self, topic: str | None) -> SimpleNamespace:
        if self.down:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT))
        names = [topic] if topic is not None else list(self.partitions)
        topics = {}
        for name in names:
            if name in self.partitions:
                parts = {p: SimpleNamespace(id=p) for p in range(self.partitions[name])}
                topics[name] = SimpleNamespace(topic=name, partitions=parts, error=None)
            else:
                error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
                topics[name] = SimpleNamespace(topic=name, partitions={}, error=error)
        return SimpleNamespace(topics=topics)

    def error_event(self, error: KafkaError) -> None:
        """Deliver ``error`` to every client's ``error_cb``, as librdkafka does."""
        configs = [p.config for p in self.producers] + [c.config for c in self.consumers]
        for config in configs:
            callback = config.get("error_cb")
            if callback is not None:
                callback(error)


class FakeProducer:
    """confluent ``Producer`` over a `FakeCluster`: delivery reports are served by poll()."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self._reports: queue.SimpleQueue[tuple[Callable[..., None], KafkaError | None, Message]] = (
            queue.SimpleQueue()
        )
        self.produced = 0
        cluster.producers.append(self)

    def produce(  # noqa: PLR0917 - mirrors confluent
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        partition: int = -1,
        callback: Any = None,
        on_delivery: Any = None,
        timestamp: int = 0,
        headers: Any = None,
    ) -> None:
        if self.cluster.queue_full:
            raise BufferError("Local: Queue full")
        report = on_delivery or callback or self.config.get("on_delivery")
        error = self.cluster.delivery_error
        if error is None and topic not in self.cluster.partitions:
            error = KafkaError(KafkaError._UNKNOWN_TOPIC)
        if error is not None:
            message = Message(topic=topic, partition=partition, key=key, value=value)
        else:
            count = self.cluster.partitions[topic]
            chosen = partition if partition >= 0 else (hash(key) % count if key else 0)
            message = self.cluster.append(topic, chosen, key, value, list(headers or []))
            self.produced += 1
        if report is not None:
            self._reports.put((report, error, message))

    def poll(self, timeout: float = -1) -> int:
        served = 0
        try:
            report, error, message = self._reports.get(timeout=max(timeout, 0))
        except queue.Empty:
            return 0
        report(error, message)
        served += 1
        while True:
            try:
                report, error, message = self._reports.get_nowait()
            except queue.Empty:
                return served
            report(error, message)
            served += 1

    def flush(self, timeout: float = -1) -> int:
        while self.poll(0):
            pass
        return 0

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return self.cluster.metadata(topic)


class FakeConsumer:
    """confluent ``Consumer`` over a `FakeCluster`: consume() waits on the cluster's condition."""

    def __init__(self, cluster: FakeCluster, config: dict[str, Any]) -> None:
        self.cluster = cluster
        self.config = config
        self.positions: dict[tuple[str, int], int] = {}
        self.closed = False
        cluster.consumers.append(self)

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = {(tp.topic, tp.partition): max(tp.offset, 0) for tp in partitions}

    def _available(self) -> list[Message]:
        found = []
        for key, position in self.positions.items():
            found.extend(self.cluster.logs[key][position:])
        return found

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        # Like librdkafka: wait until num_messages records are there or the timeout ends.
        with self.cluster.condition:
            self.cluster.condition.wait_for(
                lambda: len(self._available()) >= num_messages, timeout=max(timeout, 0)
            )
            batch = self._available()[:num_messages]
            for message in batch:
                key = (str(message.topic()), int(message.partition() or 0))
                self.positions[key] = int(message.offset() or 0) + 1
            return batch

    def poll(self, timeout: float = -1) -> Message | None:
        batch = self.consume(1, timeout)
        return batch[0] if batch else None

    def get_watermark_offsets(
        self, partition: TopicPartition, timeout: float = -1, cached: bool = False
    ) -> tuple[int, int] | None:
        if self.cluster.down and not cached:
            return None
        with self.cluster.condition:
            return 0, len(self.cluster.logs[(partition.topic, partition.partition)])

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        return self.cluster.metadata(topic)

    def close(self) -> None:
        self.closed = True


class FakeClients:
    """`gateway.kafka.KafkaClients` over one `FakeCluster`."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster

    def producer(self, config: dict[str, Any]) -> FakeProducer:
        return FakeProducer(self.cluster, config)

    def consumer(self, config: dict[str, Any]) -> FakeConsumer:
        return FakeConsumer(self.cluster, config)


Handler = Callable[[protocol.Request], protocol.Reply | None]
"""Returns the reply to send, or None to send nothing."""


class FakeWorker:
    """Serves the requests topic on a thread: decodes, calls a handler, produces the reply."""

    def __init__(self, cluster: FakeCluster, handlers: dict[str, Handler], topic: str = "requests") -> None:
        self.cluster = cluster
        self.handlers = handlers
        self.requests: list[protocol.Request] = []
        self.records: list[Message] = []
        self._consumer = FakeConsumer(cluster, {})
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(cluster.partitions[topic])])
        self._producer = FakeProducer(cluster, {})
        self._stop = threading.Event()
        self._received = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> FakeWorker:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with self.cluster.condition:
            self.cluster.condition.notify_all()
        self._thread.join()

    def wait_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block until ``count`` requests arrived (run it through ``asyncio.to_thread``)."""
        with self._received:
            return self._received.wait_for(lambda: len(self.requests) >= count, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._consumer.consume(100, timeout=0.05):
                self.records.append(message)
                request = protocol.Request.from_record(message.value(), record_headers(message))
                with self._received:
                    self.requests.append(request)
                    self._received.notify_all()
                handler = self.handlers[request.method]
                threading.Thread(target=self._serve, args=(handler, request), daemon=True).start()

    def _serve(self, handler: Handler, request: protocol.Request) -> None:
        reply = handler(request)
        if reply is not None:
            self.reply(request, reply)

    def send(self, topic: str, partition: int, headers: Any, value: bytes | None) -> None:
        """Produce a raw reply record (tests use it for malformed and late replies too)."""
        self.cluster.append(topic, partition, None, value, headers)

    def reply(self, request: protocol.Request, reply: protocol.Reply) -> None:
        """Produce ``reply`` where ``request`` asked for it."""
        self.send(request.reply_to, request.reply_partition or 0, reply.headers(), reply.body)


def record_headers(message: Message) -> list[tuple[str, bytes | None]]:
    """A record's headers as confluent returns them for consumed records."""
    return cast("list[tuple[str, bytes | None]]", message.headers() or [])


def echo(request: protocol.Request) -> protocol.Reply:
    """Replies with the request body and content type."""
    return protocol.Reply(request.correlation_id, 200, request.body, request.content_type, request.trace)

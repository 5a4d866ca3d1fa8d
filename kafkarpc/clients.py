"""The seam to Kafka: the slice of confluent-kafka both applications call, as Protocols.

Production passes `ConfluentClients`; unit tests pass an in-memory implementation of the
same Protocols, so `AsyncProducer`, `Fetcher` and everything above them run unchanged in
both. Every client built here sends librdkafka's own log lines through Python logging
(`kafkarpc.logs.LIBRDKAFKA`), so none reaches the terminal raw.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

import confluent_kafka

from .logs import LIBRDKAFKA

RecordHeaders = list[tuple[str, bytes | None]]
"""Headers as consumed: (name, value) pairs in record order; a value may be absent."""
DeliveryCallback = Callable[[Any, Any], None]
"""``(error or None, message)``, called on the thread serving the producer's ``poll()``."""


class Message(Protocol):
    """A consumed record or a delivery report (``confluent_kafka.Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RecordHeaders | None: ...
    def error(self) -> Any: ...


class ProducerClient(Protocol):
    """What the applications call on a ``confluent_kafka.Producer``."""

    def produce(
        self,
        topic: str,
        value: bytes | None = ...,
        key: bytes | None = ...,
        partition: int = ...,
        *,
        on_delivery: DeliveryCallback | None = ...,
        headers: Sequence[tuple[str, bytes | None]] | None = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...
    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any: ...
    def purge(self, in_queue: bool = ..., in_flight: bool = ..., blocking: bool = ...) -> None: ...
    def __len__(self) -> int:
        """Records queued, in flight or with a delivery report not yet served."""
        ...


class ConsumerClient(Protocol):
    """What the applications call on a ``confluent_kafka.Consumer``.

    ``get_watermark_offsets`` is documented to return None on timeout (or when ``cached``
    and nothing is cached yet), although the type stub omits it.
    """

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[..., None] = ...,
        on_revoke: Callable[..., None] = ...,
        on_lost: Callable[..., None] = ...,
    ) -> None: ...
    def assign(self, partitions: list[confluent_kafka.TopicPartition]) -> None: ...
    def incremental_assign(self, partitions: list[confluent_kafka.TopicPartition]) -> None: ...
    def assignment(self) -> list[confluent_kafka.TopicPartition]: ...
    def poll(self, timeout: float = ...) -> Message | None: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Message]: ...
    def pause(self, partitions: list[confluent_kafka.TopicPartition]) -> None: ...
    def resume(self, partitions: list[confluent_kafka.TopicPartition]) -> None: ...
    def position(
        self, partitions: list[confluent_kafka.TopicPartition]
    ) -> list[confluent_kafka.TopicPartition]: ...
    def seek(self, partition: confluent_kafka.TopicPartition) -> None: ...
    def store_offsets(self, *, offsets: list[confluent_kafka.TopicPartition]) -> None: ...
    def commit(self, *, offsets: list[confluent_kafka.TopicPartition], asynchronous: bool = ...) -> Any: ...
    def get_watermark_offsets(
        self, partition: confluent_kafka.TopicPartition, timeout: float = ..., cached: bool = ...
    ) -> tuple[int, int] | None: ...
    def list_topics(self, topic: str | None = ..., timeout: float = ...) -> Any: ...
    def close(self) -> None: ...


class KafkaClients(Protocol):
    """Builds producers and consumers from librdkafka configs."""

    def producer(self, config: dict[str, Any]) -> ProducerClient: ...
    def consumer(self, config: dict[str, Any]) -> ConsumerClient: ...


class ConfluentClients:
    """The real clients, logging through `LIBRDKAFKA` unless the config names a logger."""

    def producer(self, config: dict[str, Any]) -> ProducerClient:
        """A ``confluent_kafka.Producer``."""
        return cast("ProducerClient", confluent_kafka.Producer({"logger": LIBRDKAFKA, **config}))

    def consumer(self, config: dict[str, Any]) -> ConsumerClient:
        """A ``confluent_kafka.Consumer``."""
        return cast("ConsumerClient", confluent_kafka.Consumer({"logger": LIBRDKAFKA, **config}))

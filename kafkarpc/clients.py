"""The seams to Kafka: the subset of confluent-kafka's API the worker uses, as Protocols.

Production passes ``confluent_kafka.Consumer``/``Producer``; unit tests pass in-memory fakes
that implement the same methods, so both run the same worker code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

# Headers as consumed: (name, value) pairs in record order; a value may be absent.
RecordHeaders = list[tuple[str, bytes | None]]


class Message(Protocol):
    """A consumed record (``confluent_kafka.Message``)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> RecordHeaders | None: ...
    def error(self) -> Any: ...


class ConsumerClient(Protocol):
    """A group consumer (``confluent_kafka.Consumer``)."""

    def subscribe(
        self,
        topics: list[str],
        on_assign: Callable[..., None] = ...,
        on_revoke: Callable[..., None] = ...,
        on_lost: Callable[..., None] = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> Any: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...
    def store_offsets(self, offsets: list[Any]) -> None: ...
    def commit(self, offsets: list[Any], asynchronous: bool = ...) -> Any: ...
    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def assignment(self) -> list[Any]: ...
    def close(self) -> None: ...


class ProducerClient(Protocol):
    """A producer (``confluent_kafka.Producer``)."""

    def produce(
        self,
        topic: str,
        *,
        value: bytes | None = ...,
        key: bytes | None = ...,
        partition: int = ...,
        on_delivery: Callable[[Any, Any], None] | None = ...,
        headers: RecordHeaders | None = ...,
    ) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...


ConsumerFactory = Callable[[dict[str, Any]], ConsumerClient]
ProducerFactory = Callable[[dict[str, Any]], ProducerClient]

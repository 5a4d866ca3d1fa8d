"""Fetching a batch of records from a consumer without waiting for a full batch.

confluent-kafka's ``consume(n, timeout)`` waits the whole timeout unless ``n`` records
arrive, which would add the timeout to every request at low traffic. `next_batch`
waits in ``poll()``, which returns at the first record, then takes whatever else is
already fetched with ``consume(n - 1, timeout=0)``. Both release the GIL while waiting.
"""

from __future__ import annotations

from typing import Any, Protocol


class BatchSource(Protocol):
    """The two consumer calls `next_batch` makes."""

    def poll(self, timeout: float = ...) -> Any: ...
    def consume(self, num_messages: int = ..., timeout: float = ...) -> list[Any]: ...


def next_batch(consumer: BatchSource, max_messages: int, wait: float) -> list[Any]:
    """Up to ``max_messages`` records (or events): empty after ``wait`` seconds of silence."""
    first = consumer.poll(wait)
    if first is None:
        return []
    if max_messages <= 1:
        return [first]
    return [first, *consumer.consume(num_messages=max_messages - 1, timeout=0)]

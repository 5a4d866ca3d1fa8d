"""The request consumer: a consumer-group member on a `Fetcher`, with offsets and back-pressure.

The fetch thread (`kafkarpc.fetcher`) is the only one calling the client. The loop asks it
for things through this class: `store` marks positions that the thread hands to
``store_offsets`` before its next fetch (auto-commit sends them); `pause` and `resume` stop
and restart fetching. Rebalance callbacks run on the fetch thread inside a fetch:

* assigned: partitions assigned while fetching is paused are paused at once, before any
  fetch can return their records, so the buffer limit holds across rebalances;
* revoked: the thread blocks until the loop has drained the revoked partitions, then
  commits their positions synchronously, so the next owner starts right after the work
  that finished here;
* lost: another member owns them already; nothing is committed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from confluent_kafka import KafkaException, TopicPartition

from kafkarpc.fetcher import Fetcher

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, Message
    from workers.offsets import Partition

log = logging.getLogger(__name__)


class ConsumerListener(Protocol):
    """What the consumer reports to, always on the loop thread."""

    def on_batch(self, messages: list[Message], fetched_at: float) -> None: ...
    def on_assigned(self, partitions: list[Partition]) -> None: ...
    def on_lost(self, partitions: list[Partition]) -> None: ...
    async def drain(self, partitions: list[Partition]) -> list[tuple[Partition, int]]: ...


class RequestConsumer:
    """Subscribes to the request topic and feeds the worker; construct it on the event loop."""

    def __init__(
        self, client: ConsumerClient, topic: str, listener: ConsumerListener, batch_size: int
    ) -> None:
        self._topic = topic
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._lock = threading.Lock()
        self._stores: dict[Partition, int] = {}  # guarded by _lock
        self._fetcher = Fetcher(
            client,
            name="request-consumer",
            on_batch=listener.on_batch,
            batch_size=batch_size,
            between_fetches=self._store_offsets,
        )
        self._client = client
        self.stopped = self._fetcher.stopped
        """Settled on the loop once the thread has drained, committed and closed the client."""

    def start(self) -> None:
        """Subscribe and start fetching."""
        self._fetcher.start(self._subscribe, teardown=self._revoke_all)

    def stop(self) -> None:
        """Stop fetching; the thread then drains every partition, commits and closes."""
        self._fetcher.stop()

    def store(self, partition: Partition, position: int) -> None:
        """Mark ``position`` (next offset to read) committable; auto-commit sends it. Loop thread."""
        with self._lock:
            self._stores[partition] = position

    @property
    def paused(self) -> bool:
        """Whether the fetch thread has paused fetching (not merely been asked to)."""
        return self._fetcher.paused

    def pause(self) -> None:
        """Stop fetching (back-pressure). Loop thread."""
        self._fetcher.pause()

    def resume(self) -> None:
        """Fetch again. Loop thread."""
        self._fetcher.resume()

    def _subscribe(self, client: ConsumerClient) -> None:
        client.subscribe([self._topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost)

    def _store_offsets(self) -> None:
        with self._lock:
            stores, self._stores = self._stores, {}
        if not stores:
            return
        offsets = [TopicPartition(topic, number, position) for (topic, number), position in stores.items()]
        try:
            self._client.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # A partition was taken away meanwhile: its next owner re-reads from the last
            # commit, so these records may be handled twice, never lost.
            log.warning("could not store offsets", extra={"error": str(exc)})

    def _assigned(self, client: ConsumerClient, partitions: Sequence[TopicPartition]) -> None:
        if self._fetcher.paused and partitions:
            # Assign now rather than after this callback, so the new partitions can be paused
            # before the fetch that is serving this rebalance returns any of their records.
            _assign(client, list(partitions))
            client.pause(list(partitions))
        self._loop.call_soon_threadsafe(self._listener.on_assigned, _names(partitions))

    def _lost(self, _client: ConsumerClient, partitions: Sequence[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._listener.on_lost, _names(partitions))

    def _revoke_all(self, client: ConsumerClient) -> None:
        self._revoked(client, client.assignment())

    def _revoked(self, client: ConsumerClient, partitions: Sequence[TopicPartition]) -> None:
        names = _names(partitions)
        if not names or self._loop.is_closed():
            return
        positions = asyncio.run_coroutine_threadsafe(self._listener.drain(names), self._loop).result()
        with self._lock:
            # The commit below supersedes them; applied later they could move a re-assigned
            # partition's position backwards.
            for name in names:
                self._stores.pop(name, None)
        if not positions:
            return
        offsets = [TopicPartition(topic, number, position) for (topic, number), position in positions]
        try:
            client.commit(offsets=offsets, asynchronous=False)
            log.info("committed revoked partitions", extra={"offsets": [str(o) for o in offsets]})
        except KafkaException as exc:
            # Auto-commit already sent most of these; what is missing is redelivered.
            log.warning("commit on revocation failed", extra={"error": str(exc)})


def _assign(client: ConsumerClient, partitions: list[TopicPartition]) -> None:
    try:
        client.incremental_assign(partitions)  # cooperative rebalancing (the default)
    except KafkaException:
        client.assign(partitions)  # eager, when KAFKA_PROPERTIES chose another strategy


def _names(partitions: Iterable[TopicPartition]) -> list[Partition]:
    return [(tp.topic, tp.partition) for tp in partitions]

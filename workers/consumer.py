"""The request consumer: one thread that fetches batches and hands them to the event loop.

Threading contract: only the consumer thread touches the client. It fetches (`next_batch`),
serves rebalance callbacks, and applies what the loop asked for through `store`, `pause` and
`resume` between fetches (calling the client from the loop thread while ``consume()`` runs
deadlocks confluent-kafka: the call holds the GIL and waits for the consuming thread).
Each fetched batch reaches the loop with ONE ``call_soon_threadsafe``. A revocation
blocks the consumer thread until the loop has drained the revoked partitions, then commits
their positions synchronously, so the next owner starts exactly after the finished work.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from confluent_kafka import KafkaException, TopicPartition

from kafkarpc.batches import next_batch

if TYPE_CHECKING:
    from kafkarpc.clients import ConsumerClient, Message
    from workers.offsets import Partition

log = logging.getLogger(__name__)

# next_batch() returns at the first record; the timeout only bounds how long a stop
# request waits to be noticed, so it costs nothing on the hot path.
POLL_TIMEOUT = 0.25


class ConsumerListener(Protocol):
    """What the consumer thread reports to, always on the loop thread."""

    def on_batch(self, messages: list[Message]) -> None: ...
    def on_assigned(self, partitions: list[Partition]) -> None: ...
    def on_lost(self, partitions: list[Partition]) -> None: ...
    async def drain(self, partitions: list[Partition]) -> list[tuple[Partition, int]]: ...


class RequestConsumer:
    """Owns a group consumer and the thread that drives it."""

    def __init__(
        self,
        client: ConsumerClient,
        topic: str,
        loop: asyncio.AbstractEventLoop,
        listener: ConsumerListener,
        batch_size: int,
    ) -> None:
        self._client = client
        self._topic = topic
        self._loop = loop
        self._listener = listener
        self._batch_size = batch_size
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._lock = threading.Lock()
        self._stores: dict[Partition, int] = {}  # guarded by _lock
        self._want_paused = False  # written by the loop, read by the consumer thread
        self._paused = False  # consumer thread only
        self._thread = threading.Thread(target=self._run, name="request-consumer", daemon=True)
        self.stopped: asyncio.Future[None] = loop.create_future()
        """Resolved (or failed) on the loop once the thread has drained, committed and closed."""

    def start(self) -> None:
        """Subscribe and start fetching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop fetching; the thread then drains every partition, commits and closes."""
        self._stopping.set()
        self._wakeup.set()

    def store(self, partition: Partition, position: int) -> None:
        """Mark ``position`` (next offset to read) committable; auto-commit sends it. Loop thread."""
        with self._lock:
            self._stores[partition] = position

    def pause(self) -> None:
        """Stop fetching (backpressure); applied by the consumer thread. Loop thread."""
        self._want_paused = True

    def resume(self) -> None:
        """Fetch again, waking the consumer thread at once. Loop thread."""
        self._want_paused = False
        self._wakeup.set()

    def _run(self) -> None:
        try:
            self._client.subscribe(
                [self._topic], on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
            )
            while not self._stopping.is_set():
                self._apply()
                timeout = POLL_TIMEOUT
                if self._paused:
                    # Nothing to fetch: wait for resume() or stop(), then only serve callbacks.
                    self._wakeup.wait(POLL_TIMEOUT)
                    self._wakeup.clear()
                    timeout = 0
                messages = next_batch(self._client, self._batch_size, timeout)
                records = [message for message in messages if not self._failed(message)]
                if records:
                    self._loop.call_soon_threadsafe(self._listener.on_batch, records)
            self._revoked(self._client, self._client.assignment())
            self._client.close()  # its own revocation callback finds nothing left to drain
        except BaseException as exc:
            log.exception("request consumer failed")
            self._settle(exc)
            return
        self._settle(None)

    def _apply(self) -> None:
        """Apply stores and pause/resume requested by the loop (consumer thread only)."""
        with self._lock:
            stores, self._stores = self._stores, {}
        if stores:
            offsets = [
                TopicPartition(topic, number, position) for (topic, number), position in stores.items()
            ]
            try:
                self._client.store_offsets(offsets=offsets)
            except KafkaException as exc:
                # A partition was taken away meanwhile: its next owner re-reads from the last
                # commit, so these records may be handled twice, never lost.
                log.warning("could not store offsets", extra={"error": str(exc)})
        if self._want_paused != self._paused:
            self._paused = self._want_paused
            action = self._client.pause if self._paused else self._client.resume
            try:
                action(self._client.assignment())
            except KafkaException as exc:
                log.warning("could not pause or resume fetching", extra={"error": str(exc)})

    def _settle(self, exc: BaseException | None) -> None:
        def settle() -> None:
            if self.stopped.done():
                return
            if exc is None:
                self.stopped.set_result(None)
            else:
                self.stopped.set_exception(exc)

        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(settle)

    def _failed(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return False
        if error.fatal():
            raise KafkaException(error)
        log.warning("consumer error", extra={"error": str(error)})
        return True

    def _assigned(self, _client: Any, partitions: Sequence[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._listener.on_assigned, _names(partitions))

    def _lost(self, _client: Any, partitions: Sequence[TopicPartition]) -> None:
        self._loop.call_soon_threadsafe(self._listener.on_lost, _names(partitions))

    def _revoked(self, _client: Any, partitions: Sequence[TopicPartition]) -> None:
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
            self._client.commit(offsets=offsets, asynchronous=False)
            log.info("committed revoked partitions", extra={"offsets": [str(o) for o in offsets]})
        except KafkaException as exc:
            # Auto-commit already sent most of these; what is missing is redelivered.
            log.warning("commit on revocation failed", extra={"error": str(exc)})


def _names(partitions: Iterable[TopicPartition]) -> list[Partition]:
    return [(tp.topic, tp.partition) for tp in partitions]


def lag_from_statistics(statistics: str | bytes) -> int:
    """Total consumer lag over assigned partitions in a librdkafka statistics document."""
    document = orjson.loads(statistics)
    total = 0
    for topic in document.get("topics", {}).values():
        for number, partition in topic.get("partitions", {}).items():
            lag = partition.get("consumer_lag", -1)
            # -1 is librdkafka's "internal unassigned" partition; lag -1 means unknown.
            if number != "-1" and partition.get("fetch_state") == "active" and lag >= 0:
                total += lag
    return int(total)

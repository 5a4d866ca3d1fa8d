"""`AsyncProducer`: ``produce()`` on the event loop, delivery reports back to it in batches.

Threading contract:

* `produce` and `send` are called on the loop thread. ``produce()`` only enqueues into
  librdkafka (microseconds), so it never blocks the loop.
* One poll thread serves librdkafka's delivery callbacks. Whatever one ``poll()`` reported
  reaches the loop with ONE ``call_soon_threadsafe``, where futures are settled and
  failures handed to ``on_failed``.
* `stop` first ends the poll thread, then flushes on a worker thread and hands over what
  the flush reported: at no moment do two threads serve callbacks.

Two ways to produce: `send` returns a future settled by the record's acknowledgement (the
worker's replies, the gateway's publishes); `produce` costs nothing per record on success
and reports only a failure (the gateway's requests, whose success is the reply itself).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from confluent_kafka import KafkaError, KafkaException

from .errors import DeliveryError
from .topics import ACL_REFUSALS

if TYPE_CHECKING:
    from .clients import KafkaClients, Message, ProducerClient

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""Longest one ``poll()`` waits when idle (how soon `stop` is noticed); a report ends it at once."""
ANY_PARTITION = -1
"""librdkafka's "let the partitioner choose"."""

FailureHandler = Callable[["Message", KafkaError], object]
"""``(message, error)`` for a failed `AsyncProducer.produce`; called on the event loop."""
# (future or None for a produce() record, error or None, message)
Report = tuple["asyncio.Future[Delivery] | None", "KafkaError | None", "Message"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where an acknowledged record landed."""

    topic: str
    partition: int
    offset: int


def refused_by_acl(error: BaseException) -> bool:
    """Whether ``error`` is a `DeliveryError` for a write this principal's ACLs do not allow."""
    return isinstance(error, DeliveryError) and error.error.code() in ACL_REFUSALS


class AsyncProducer:
    """Owns one confluent producer and the thread serving its delivery reports.

    Args:
        clients: Builds the producer.
        config: Its librdkafka configuration.
    """

    def __init__(self, clients: KafkaClients, config: dict[str, Any]) -> None:
        self._on_failed: FailureHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._reports: list[Report] = []  # only the thread serving callbacks touches it
        # The config-level callback serves produce(): no per-record closure on that path.
        self._client = clients.producer({**config, "on_delivery": self._reported})

    @property
    def client(self) -> ProducerClient:
        """The underlying producer, for metadata calls (thread-safe in librdkafka)."""
        return self._client

    def start(self, on_failed: FailureHandler | None = None) -> None:
        """Start the poll thread; call on the event loop.

        ``on_failed`` is called on the loop for each record given to `produce` that Kafka
        refused in its delivery report.
        """
        self._on_failed = on_failed
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._poll_until_stopped, name="kafka-producer", daemon=True)
        self._thread.start()

    def produce(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> None:
        """Enqueue a record; only a failure is reported, to ``on_failed``.

        Raises:
            DeliveryError: librdkafka refused the record at once (a full queue is ``_QUEUE_FULL``).
        """
        try:
            self._client.produce(topic, value, key, headers=headers)
        except BufferError:
            raise DeliveryError(topic, KafkaError(KafkaError._QUEUE_FULL)) from None
        except KafkaException as exc:
            raise DeliveryError(topic, exc.args[0]) from None

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        partition: int | None = None,
    ) -> asyncio.Future[Delivery]:
        """Enqueue a record; the future resolves once Kafka acknowledged it.

        Call on the loop thread. The future fails with `DeliveryError` when the record was
        refused, including at once (a full local queue counts as refused).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()
        try:
            self._client.produce(
                topic,
                value,
                key,
                ANY_PARTITION if partition is None else partition,
                on_delivery=partial(self._acknowledged, future),
                headers=list(headers),
            )
        except BufferError:
            future.set_exception(DeliveryError(topic, KafkaError(KafkaError._QUEUE_FULL)))
        except KafkaException as exc:
            future.set_exception(DeliveryError(topic, exc.args[0]))
        return future

    async def stop(self, flush_timeout: float) -> int:
        """Stop the poll thread, flush what is queued (bounded); returns the records left unsent."""
        self._loop = self._loop or asyncio.get_running_loop()
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        left = await asyncio.to_thread(self._client.flush, flush_timeout)
        self._hand_over()
        if left:
            log.error("records not delivered at shutdown", extra={"records": left})
        return int(left)

    def _reported(self, error: KafkaError | None, message: Message) -> None:
        if error is not None and self._on_failed is not None:
            self._reports.append((None, error, message))

    def _acknowledged(
        self, future: asyncio.Future[Delivery], error: KafkaError | None, message: Message
    ) -> None:
        self._reports.append((future, error, message))

    def _poll_until_stopped(self) -> None:
        while not self._stopping.is_set():
            self._client.poll(POLL_SECONDS)
            self._hand_over()

    def _hand_over(self) -> None:
        if self._reports and self._loop is not None and not self._loop.is_closed():
            reports, self._reports = self._reports, []
            self._loop.call_soon_threadsafe(self._settle, reports)

    def _settle(self, reports: list[Report]) -> None:
        for future, error, message in reports:
            if future is None:
                assert error is not None
                assert self._on_failed is not None
                try:
                    self._on_failed(message, error)
                except Exception:  # a bug there must not lose the rest of the batch
                    log.exception("delivery failure handler failed")
            elif future.done():
                continue
            elif error is None:
                future.set_result(
                    Delivery(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
                )
            else:
                future.set_exception(DeliveryError(str(message.topic()), error))

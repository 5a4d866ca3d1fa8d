"""`RequestProducer`: produce on the event loop, serve delivery reports on one poll thread.

``produce()`` only enqueues into librdkafka (microseconds), so it runs on the loop.
A single thread calls ``poll()``, which waits without holding the GIL and returns
as soon as a delivery report or error is ready; results cross back to the loop with
``call_soon_threadsafe``. On the RPC path nothing is scheduled for a successful
delivery: the reply resolves the request, and only a failed delivery needs the loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import confluent_kafka
from confluent_kafka import KafkaError, Message

from .errors import (
    GatewayError,
    KafkaUnavailableError,
    PayloadTooLargeError,
    ProducerQueueFullError,
    ReplyTimeout,
)

if TYPE_CHECKING:
    from confluent_kafka._types import HeadersType

    from .kafka import DeliveryCallback, KafkaClients, KafkaProducer
    from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

# Delivery errors after which the record may still have been written: the caller
# gets 504 (indeterminate), never a "safe to retry" 503 (RELIABILITY.md §1.2).
INDETERMINATE = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT, KafkaError.REQUEST_TIMED_OUT})
TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE})
UNKNOWN_TOPIC = frozenset({KafkaError._UNKNOWN_TOPIC, KafkaError.UNKNOWN_TOPIC_OR_PART})
POLL_SECONDS = 0.1
"""Longest a poll() waits when idle; it returns at once when a report is ready."""

ErrorHandler = Callable[[str, GatewayError], object]
"""``(correlation id, error)``, called on the event loop for a failed request delivery."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where a published record landed."""

    topic: str
    partition: int
    offset: int


def delivery_error(error: KafkaError) -> GatewayError:
    """The gateway error for a librdkafka delivery error."""
    code = error.code()
    if code in INDETERMINATE:
        return ReplyTimeout(f"the request may or may not have been written: {error.str()}")
    if code in TOO_LARGE:
        return PayloadTooLargeError(f"the broker refused the record: {error.str()}")
    return KafkaUnavailableError(f"produce failed: {error.str()}", retry_after=1)


class RequestProducer:
    """One librdkafka producer shared by RPC requests and publishes."""

    def __init__(
        self,
        clients: KafkaClients,
        config: dict[str, Any],
        metrics: GatewayMetrics,
        on_request_error: ErrorHandler,
        on_kafka_error: Callable[[KafkaError], None],
    ) -> None:
        self._metrics = metrics
        self._on_request_error = on_request_error
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = threading.Event()
        self._thread: threading.Thread | None = None
        # The config-level callback serves RPC requests: their key is the correlation id,
        # so no per-request closure is needed. Publishes pass their own callback.
        self._producer: KafkaProducer = clients.producer(
            # librdkafka's own log lines go through logging, so they come out as JSON too.
            {**config, "on_delivery": self._request_delivered, "error_cb": on_kafka_error, "logger": log}
        )

    @property
    def client(self) -> KafkaProducer:
        """The underlying producer, for metadata calls."""
        return self._producer

    def start(self) -> None:
        """Start the poll thread; call from the event loop."""
        self._loop = asyncio.get_running_loop()
        self._running.set()
        self._thread = threading.Thread(target=self._poll_forever, name="rpcgw-producer-poll", daemon=True)
        self._thread.start()

    def send_request(self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]) -> None:
        """Enqueue an RPC request; a delivery failure reaches ``on_request_error``.

        Raises:
            ProducerQueueFullError: librdkafka's queue is full; nothing was sent.
            KafkaUnavailableError: librdkafka refused the record outright.
        """
        self._produce(topic, value, key, headers, None)

    def publish(
        self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[Delivery]:
        """Enqueue a record; the future resolves with its delivery report.

        Raises:
            ProducerQueueFullError: librdkafka's queue is full; nothing was sent.
            KafkaUnavailableError: librdkafka refused the record outright.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivery] = loop.create_future()

        def delivered(error: KafkaError | None, message: Message) -> None:
            loop.call_soon_threadsafe(_settle, future, error, message)

        self._produce(topic, value, key, headers, delivered)
        return future

    def _produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        callback: DeliveryCallback | None,
    ) -> None:
        # list[tuple[str, bytes]] is what librdkafka receives; the stub's union is wider but invariant.
        record_headers = cast("HeadersType", headers)
        try:
            if callback is None:
                self._producer.produce(topic, value, key, headers=record_headers)
            else:
                self._producer.produce(topic, value, key, on_delivery=callback, headers=record_headers)
        except BufferError:
            self._metrics.produce_errors.labels("_QUEUE_FULL").inc()
            raise ProducerQueueFullError("the Kafka producer queue is full", retry_after=1) from None
        except confluent_kafka.KafkaException as exc:
            error = exc.args[0]
            self._metrics.produce_errors.labels(error.name()).inc()
            raise delivery_error(error) from None

    def stop(self, flush_timeout: float) -> int:
        """Flush what is queued (bounded), then stop the poll thread; returns records left unsent."""
        left = self._producer.flush(flush_timeout)
        if left:
            log.warning("producer stopped with undelivered records", extra={"records": left})
        self._running.clear()
        if self._thread is not None:
            self._thread.join()
        return left

    def _poll_forever(self) -> None:
        while self._running.is_set():
            self._producer.poll(POLL_SECONDS)

    def _request_delivered(self, error: KafkaError | None, message: Message) -> None:
        """Poll thread: hand a failed request delivery to the loop; ignore successes."""
        if error is None or self._loop is None:
            return
        self._metrics.produce_errors.labels(error.name()).inc()
        key = message.key()
        correlation_id = key.decode("utf-8", "replace") if key else ""
        self._loop.call_soon_threadsafe(self._on_request_error, correlation_id, delivery_error(error))


def _settle(future: asyncio.Future[Delivery], error: KafkaError | None, message: Message) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(delivery_error(error))
        return
    future.set_result(
        Delivery(str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
    )

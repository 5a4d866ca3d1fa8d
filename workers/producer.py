"""The reply producer: ``produce()`` on the loop, delivery reports back to the loop in batches.

Threading contract: `send` is called on the loop thread and returns a future; a poll thread
serves delivery callbacks and resolves all futures reported by one ``poll()`` with ONE
``call_soon_threadsafe``. There is no per-message flush.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from typing import TYPE_CHECKING, Any

from workers.errors import DeliveryError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kafkarpc.clients import ProducerClient

log = logging.getLogger(__name__)

# poll() returns as soon as a delivery report is ready; the timeout only bounds how long a
# stop request waits to be noticed.
POLL_TIMEOUT = 0.25
# librdkafka's "let the partitioner choose".
ANY_PARTITION = -1

Delivery = tuple[asyncio.Future[None], str, Any]


class ReplyProducer:
    """Owns an idempotent producer and its delivery-report thread."""

    def __init__(self, client: ProducerClient, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._stopping = threading.Event()
        self._reports: list[Delivery] = []  # touched only by the thread serving callbacks
        self._thread = threading.Thread(target=self._run, name="reply-producer", daemon=True)

    def start(self) -> None:
        """Start serving delivery reports."""
        self._thread.start()

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: Sequence[tuple[str, bytes | None]],
        partition: int | None = None,
    ) -> asyncio.Future[None]:
        """Produce one record; the future resolves once Kafka acknowledged it (acks=all).

        Call on the loop thread. The future fails with `DeliveryError` when the record was
        refused or could not even be queued (a full local queue counts as refused).
        """
        future: asyncio.Future[None] = self._loop.create_future()
        try:
            self._client.produce(
                topic,
                value=value,
                key=key,
                partition=ANY_PARTITION if partition is None else partition,
                on_delivery=partial(self._delivered, future, topic),
                headers=list(headers),
            )
        except Exception as exc:  # BufferError (queue full), KafkaException, bad arguments
            future.set_exception(DeliveryError(topic, exc))
        return future

    async def stop(self, flush_timeout: float) -> None:
        """Stop the poll thread and flush what is queued, waiting at most ``flush_timeout`` seconds."""
        self._stopping.set()
        await asyncio.to_thread(self._thread.join)
        left = await asyncio.to_thread(self._client.flush, flush_timeout)
        self._hand_over()
        if left:
            log.error("records not delivered at shutdown", extra={"records": left})

    def _delivered(self, future: asyncio.Future[None], topic: str, error: Any, _message: Any) -> None:
        self._reports.append((future, topic, error))

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._client.poll(POLL_TIMEOUT)
            self._hand_over()

    def _hand_over(self) -> None:
        if self._reports:
            reports, self._reports = self._reports, []
            self._loop.call_soon_threadsafe(_resolve, reports)


def _resolve(reports: list[Delivery]) -> None:
    for future, topic, error in reports:
        if future.done():
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(DeliveryError(topic, error))

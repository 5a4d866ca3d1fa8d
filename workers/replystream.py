"""`ReplyStream`: the records of one streamed reply, in order, into one partition.

Parts are numbered 0, 1, 2, ... as they are sent and the end record takes the next number
(docs/PROTOCOL.md). Each record is produced without waiting for the previous one's
acknowledgement, since that would cost a broker round trip per part: every part has the
request's correlation id as its key, and `AsyncProducer` keeps the order of a key's records
(one idempotent producer per key while any are unacknowledged). At most `WINDOW`
records are unacknowledged; `close` waits for the rest.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kafkarpc.producer import AsyncProducer, Delivery
    from kafkarpc.protocol import Reply

WINDOW = 64
"""Records of one stream produced but not yet acknowledged, at most."""


class ReplyStream:
    """Sends one streamed reply; use on the event loop.

    Args:
        producer: Produces the records.
        topic: The reply topic.
        partition: The reply partition; None: wherever the first record lands, then all there.
        key: The record key (the correlation id).
        window: Records unacknowledged at most before `send` waits.
    """

    def __init__(
        self,
        producer: AsyncProducer,
        topic: str,
        partition: int | None,
        key: bytes,
        window: int = WINDOW,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self.partition = partition
        """Where the records go; set by the first acknowledgement when the request named none."""
        self._key = key
        self._window = window
        self._pending: set[asyncio.Future[Delivery]] = set()
        self.sent = 0
        """Records produced so far, and so the next record's sequence number."""
        self.refused: Exception | None = None
        """The first record Kafka refused, if one was: the stream has a gap from there on."""

    async def send(self, reply: Reply, *, final: bool = False) -> None:
        """Produce ``reply`` as the next record (the end record when ``final``).

        Waits while `WINDOW` records are unacknowledged. A refusal does not raise here: it is
        `refused`, and `close` raises it.
        """
        while len(self._pending) >= self._window:
            await asyncio.wait(self._pending, return_when=asyncio.FIRST_COMPLETED)
        # Numbered only once produced: a send cancelled while waiting leaves no gap.
        record = dataclasses.replace(reply, sequence=self.sent, final=final)
        self.sent += 1
        delivery = self._producer.send(self._topic, record.body, self._key, record.headers(), self.partition)
        if self.partition is None:
            # Pin the partition the partitioner chose, so every later record follows this one:
            # one round trip, only for requests that name no reply partition.
            try:
                self.partition = (await delivery).partition
            except Exception as exc:  # a `DeliveryError`, or anything else the record met
                self._refuse(exc)
            return
        self._pending.add(delivery)
        delivery.add_done_callback(self._settled)

    async def close(self) -> None:
        """Wait until Kafka has answered for every record.

        Raises:
            DeliveryError: the first record Kafka refused (its error, as `refused`).
        """
        if self._pending:
            await asyncio.wait(self._pending)
        if self.refused is not None:
            raise self.refused

    def _settled(self, delivery: asyncio.Future[Delivery]) -> None:
        self._pending.discard(delivery)
        if not delivery.cancelled():
            error = delivery.exception()  # also marks it retrieved: no "never retrieved" warning
            if isinstance(error, Exception):
                self._refuse(error)

    def _refuse(self, error: Exception) -> None:
        if self.refused is None:
            self.refused = error

"""`TopicPublisher`: fire-and-forget records to allow-listed topics, answered after the delivery report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import confluent_kafka

from kafkarpc.errors import DeliveryError

from .errors import GatewayError, KafkaUnavailableError, ReplyTimeout, UnknownTopicError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from kafkarpc import protocol
    from kafkarpc.producer import AsyncProducer, Delivery


class TopicPublisher:
    """Publishes to topics on the allow-list that exist on the cluster; never creates one.

    Args:
        producer: The gateway's producer.
        topics: The allow-list.
        metadata_timeout: Seconds a topic-existence check may take.
        refused: Counts a delivery error and returns the gateway error answering it.
    """

    def __init__(
        self,
        producer: AsyncProducer,
        topics: Iterable[str],
        metadata_timeout: float,
        refused: Callable[[confluent_kafka.KafkaError], GatewayError],
    ) -> None:
        self._producer = producer
        self._allowed = frozenset(topics)
        self._known: set[str] = set()
        self._metadata_timeout = metadata_timeout
        self._refused = refused

    async def publish(
        self, topic: str, value: bytes, key: bytes | None, headers: protocol.Headers, wait: float
    ) -> Delivery:
        """Produce one record and wait for its delivery report.

        Raises:
            UnknownTopicError: ``topic`` is not allow-listed or does not exist.
            ProducerQueueFullError, KafkaUnavailableError, PayloadTooLargeError: refused.
            ReplyTimeout: no delivery report in ``wait`` seconds (it may still be written).
        """
        await self.check(topic)
        try:
            async with asyncio.timeout(wait):
                return await self._producer.send(topic, value, key, headers)
        except DeliveryError as exc:
            raise self._refused(exc.error) from None
        except TimeoutError:
            detail = f"no delivery report within {wait:g} s; the record may still be written"
            raise ReplyTimeout(detail) from None

    async def check(self, topic: str) -> None:
        """Raise `UnknownTopicError` unless ``topic`` is allow-listed and exists.

        Existence is asked of the cluster once per topic (a metadata request, never a
        creation); the answer "exists" is cached, "missing" is asked again next time.
        """
        if topic not in self._allowed:
            raise UnknownTopicError(f"topic {topic!r} is not open for publishing")
        if topic in self._known:
            return
        if not await asyncio.to_thread(self._exists, topic):
            raise UnknownTopicError(f"topic {topic!r} does not exist")
        self._known.add(topic)

    def _exists(self, topic: str) -> bool:
        try:
            cluster = self._producer.client.list_topics(topic, timeout=self._metadata_timeout)
        except confluent_kafka.KafkaException as exc:
            raise KafkaUnavailableError(f"no topic metadata: {exc.args[0]}", retry_after=1) from None
        metadata = cluster.topics.get(topic)
        return metadata is not None and metadata.error is None

"""Publishing a dispatch `Outcome`: dead letter and/or reply, acknowledged by Kafka."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from kafkarpc import tracing
from kafkarpc.producer import refused_by_acl
from workers.deadletter import DeadLetter, Reason, dead_letter_for

if TYPE_CHECKING:
    from kafkarpc.clients import Message
    from kafkarpc.producer import AsyncProducer
    from workers.dispatcher import Outcome
    from workers.metrics import WorkerMetrics
    from workers.spans import WorkerSpans

log = logging.getLogger(__name__)


class OutcomePublisher:
    """Sends what a request produced and returns once Kafka has acknowledged all of it."""

    def __init__(
        self,
        producer: AsyncProducer,
        dead_letter_topic: str,
        metrics: WorkerMetrics,
        *,
        spans: WorkerSpans | None = None,
    ) -> None:
        self._producer = producer
        self._spans = spans
        self._dead_letter_topic = dead_letter_topic
        self._metrics = metrics

    async def publish(self, message: Message, outcome: Outcome) -> None:
        """Produce the outcome's dead letter, then its reply.

        A reply Kafka refuses (topic missing, partition out of range, too large) is replaced
        by a dead letter with reason ``reply-undeliverable``, so the request is accounted for.

        Raises:
            DeliveryError: a dead letter could not be delivered; the request must not be committed.
        """
        if outcome.dead_letter is not None:
            await self._dead_letter(outcome.dead_letter)
        reply = outcome.reply
        if reply is None:
            return
        span = None
        if self._spans is not None:
            span = self._spans.replying(outcome.reply_to, outcome.reply_partition, reply.correlation_id)
            reply = dataclasses.replace(reply, trace=tracing.inject(span))
        try:
            await self._producer.send(
                outcome.reply_to,
                reply.body,
                reply.correlation_id.encode(),
                reply.headers(),
                outcome.reply_partition,
            )
        except Exception as exc:
            if span is not None:
                tracing.fail(span, "reply_undeliverable", str(exc))
            details = {"topic": outcome.reply_to, "error": str(exc)}
            if refused_by_acl(exc):  # no retry helps: say which grant is missing
                details["cause"] = "Kafka ACLs refuse this worker's principal WRITE on the reply topic"
            log.error("reply undeliverable; dead-lettering the request", extra=details)
            await self._dead_letter(dead_letter_for(message, Reason.REPLY_UNDELIVERABLE, str(exc)))
        finally:
            if span is not None:
                span.end()

    async def _dead_letter(self, letter: DeadLetter) -> None:
        await self._producer.send(self._dead_letter_topic, letter.value, letter.key, letter.headers)
        self._metrics.dead_lettered.labels(letter.reason.value).inc()

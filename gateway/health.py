"""`KafkaHealth`: whether the brokers are reachable, from librdkafka error events and metadata probes.

librdkafka reports "all brokers down" (and fatal errors) through ``error_cb`` on a
client thread; that flips the state at once, and a probe task (tenacity backoff,
metadata requests only) flips it back once the brokers answer again. Readiness and
the fail-fast 503 read the state without any I/O.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import confluent_kafka
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

if TYPE_CHECKING:
    from .kafka import KafkaProducer

log = logging.getLogger(__name__)

T = TypeVar("T")


async def retry_in_thread(call: Callable[[], T]) -> T:
    """Run a blocking start-up call in a thread until it succeeds, backing off up to 2 s.

    Start-up meets passing errors (brokers still starting, a fresh topic without a
    leader yet); it keeps trying until it works or the start-up task is cancelled.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=0.05, max=2.0),
        before_sleep=_log_retry,
        reraise=True,
    ):
        with attempt:
            return await asyncio.to_thread(call)
    raise AssertionError("unreachable: AsyncRetrying either returns or raises")


class TopicMissingError(Exception):
    """A topic the gateway needs does not exist (it is never created)."""


class KafkaHealth:
    """Broker reachability and fatal client errors; construct it on the event loop."""

    def __init__(self, request_topic: str, reply_topic: str, probe_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._topics = (request_topic, reply_topic)
        self._probe_timeout = probe_timeout
        self._producer: KafkaProducer | None = None
        self.recovery: asyncio.Task[None] | None = None
        """The probe task running after "all brokers down", if any."""
        self.reachable = False
        """The last probe succeeded and no "all brokers down" came after it."""
        self.fatal: str | None = None
        """A fatal librdkafka error; the process must be restarted (liveness fails)."""
        self.reply_partitions = 0
        """Partition count of the reply topic, from the last probe."""

    def attach(self, producer: KafkaProducer) -> None:
        """The client whose metadata calls probe the cluster."""
        self._producer = producer

    def on_error(self, error: confluent_kafka.KafkaError) -> None:
        """``error_cb`` for every client: called on a librdkafka thread."""
        self._loop.call_soon_threadsafe(self._record, error)

    def _record(self, error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            self.fatal = error.str()
            log.error("fatal Kafka client error", extra={"error": error.str()})
        elif error.code() == confluent_kafka.KafkaError._ALL_BROKERS_DOWN and self.reachable:
            self.reachable = False
            log.warning("all Kafka brokers are down", extra={"error": error.str()})
            self.recovery = asyncio.create_task(self.wait_reachable())
        else:
            log.info("Kafka client error", extra={"error": error.str()})

    async def wait_reachable(self) -> None:
        """Probe until the brokers answer and both topics exist; then mark reachable."""
        self.reply_partitions = await retry_in_thread(self.probe)
        self.reachable = True

    def probe(self) -> int:
        """Blocking metadata check; returns the reply topic's partition count.

        Raises:
            TopicMissingError: a topic does not exist.
            KafkaException: the brokers did not answer in time.
        """
        request_topic, reply_topic = self._topics
        self._partitions(request_topic)
        return self._partitions(reply_topic)

    def _partitions(self, topic: str) -> int:
        assert self._producer is not None, "attach() a producer first"
        metadata = self._producer.list_topics(topic, timeout=self._probe_timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise TopicMissingError(f"topic {topic!r} does not exist (the gateway never creates topics)")
        return len(metadata.partitions)

    async def stop(self) -> None:
        """Cancel a running recovery probe."""
        if self.recovery is not None:
            self.recovery.cancel()
            await asyncio.gather(self.recovery, return_exceptions=True)


def _log_retry(state: Any) -> None:
    outcome = state.outcome
    log.warning(
        "Kafka not ready, retrying",
        extra={"attempt": state.attempt_number, "error": str(outcome.exception()) if outcome else None},
    )

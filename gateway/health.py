"""`KafkaHealth`: whether the brokers are reachable, from librdkafka error events and metadata probes.

librdkafka reports "all brokers down" (and fatal errors) through ``error_cb`` on a client
thread; that flips the state at once, and a probe task (metadata requests only, retried
with backoff) flips it back once the brokers answer again. A probe only counts if no
"all brokers down" arrived while it ran: an answer from before the outage says nothing
about now. Readiness and the fail-fast 503 read the state without any I/O.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import confluent_kafka

from kafkarpc import topics
from kafkarpc.startup import in_thread_until_it_works

if TYPE_CHECKING:
    from kafkarpc.clients import ProducerClient

log = logging.getLogger(__name__)


class TopicMissingError(Exception):
    """A topic the gateway needs does not exist (it is never created) or the ACLs refuse it."""


class KafkaHealth:
    """Broker reachability and fatal client errors; construct it on the event loop."""

    def __init__(self, request_topic: str, reply_topic: str, probe_timeout: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._topics = (request_topic, reply_topic)
        self._probe_timeout = probe_timeout
        self._producer: ProducerClient | None = None
        self._outages = 0  # "all brokers down" events so far
        self.recovery: asyncio.Task[None] | None = None
        """The probe task running after "all brokers down", if any."""
        self.reachable = False
        """The last probe succeeded and no "all brokers down" came during or after it."""
        self.fatal: str | None = None
        """A fatal librdkafka error; the process must be restarted (liveness fails)."""
        self.reply_partitions = 0
        """Partition count of the reply topic, from the last probe."""

    def attach(self, producer: ProducerClient) -> None:
        """The client whose metadata calls probe the cluster."""
        self._producer = producer

    def on_error(self, error: confluent_kafka.KafkaError) -> None:
        """``error_cb`` for every client: called on a librdkafka thread."""
        self._loop.call_soon_threadsafe(self._record, error)

    def _record(self, error: confluent_kafka.KafkaError) -> None:
        if error.fatal():
            self.fatal = error.str()
            log.error("fatal Kafka client error", extra={"error": error.str()})
        elif error.code() == confluent_kafka.KafkaError._ALL_BROKERS_DOWN:
            self._outages += 1
            if self.reachable:
                self.reachable = False
                log.warning("all Kafka brokers are down", extra={"error": error.str()})
                self.recovery = asyncio.create_task(self.wait_reachable())
        else:
            log.info("Kafka client error", extra={"error": error.str()})

    async def wait_reachable(self) -> None:
        """Probe until the brokers answer and both topics exist, with no outage meanwhile."""
        while True:
            outages = self._outages
            partitions = await in_thread_until_it_works(self.probe)
            if self._outages == outages:
                break
            log.info("Kafka reported all brokers down during the probe; probing again")
        self.reply_partitions = partitions
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
        problem = topics.unusable(topic, metadata)
        if problem is not None:
            raise TopicMissingError(problem)
        return len(metadata.partitions)

    async def stop(self) -> None:
        """Cancel a running recovery probe."""
        if self.recovery is not None:
            self.recovery.cancel()
            await asyncio.gather(self.recovery, return_exceptions=True)

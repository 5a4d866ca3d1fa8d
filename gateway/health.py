"""`KafkaHealth`: whether the brokers are reachable, from librdkafka error events and metadata probes.

librdkafka reports "all brokers down" (and fatal errors) through ``error_cb`` on a client
thread; that flips the state at once. Brokers that hang (a stopped process, a frozen VM, a
black-holed network) keep their connections open, and librdkafka says nothing until
``socket.timeout.ms`` (60 s): so `watch` also probes while all is well, and brokers that
answered nothing, neither a probe nor an acknowledgement, for ``silence`` seconds count as
unreachable too. Either way the records still queued are dropped (their callers answered
504 at once, instead of being written after their deadline when the brokers return), and
a probe task (metadata requests only, retried with backoff) flips the state back once the
brokers answer again. A probe only counts if no "all brokers down" arrived while it ran:
an answer from before the outage says nothing about now. Readiness and the fail-fast 503
read the state without any I/O.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import confluent_kafka

from kafkarpc import topics
from kafkarpc.startup import in_thread_until_it_works

if TYPE_CHECKING:
    from kafkarpc.producer import AsyncProducer

log = logging.getLogger(__name__)


class TopicMissingError(Exception):
    """A topic the gateway needs does not exist (it is never created) or the ACLs refuse it."""


class KafkaHealth:
    """Broker reachability and fatal client errors; construct it on the event loop."""

    def __init__(self, request_topic: str, reply_topic: str, probe_timeout: float, silence: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._topics = (request_topic, reply_topic)
        self._probe_timeout = probe_timeout
        self._silence = silence
        self._producer: AsyncProducer | None = None
        self._outages = 0  # "all brokers down" events so far
        self._losses = 0  # times reachability was lost: a watch probe that spans one says nothing
        self._answered = 0.0  # time.monotonic() the brokers last answered a probe (or recovery ended)
        self._watching: asyncio.Task[None] | None = None
        self._stopped = False
        self.recovery: asyncio.Task[None] | None = None
        """The probe task running since reachability was lost, if any."""
        self.reachable = False
        """The last probe succeeded, and since then neither "all brokers down" came nor did the
        brokers fall silent."""
        self.fatal: str | None = None
        """A fatal librdkafka error; the process must be restarted (liveness fails)."""
        self.reply_partitions = 0
        """Partition count of the reply topic, from the last probe."""

    def attach(self, producer: AsyncProducer) -> None:
        """The producer whose metadata calls probe the cluster, whose acknowledgements show it
        answers, and whose queue is dropped when it does not."""
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
                self._lost(f"all Kafka brokers are down: {error.str()}")
        else:
            log.info("Kafka client error", extra={"error": error.str()})

    def _lost(self, cause: str) -> None:
        """Unreachable from now: probe until the brokers answer, drop what is still queued."""
        if self._stopped:
            return
        self.reachable = False
        self._losses += 1
        log.warning("Kafka is unreachable", extra={"error": cause})
        self.recovery = asyncio.create_task(self.wait_reachable())
        if self._producer is not None:
            try:
                self._producer.purge_queued()
            except Exception:  # the queue then drains at its message.timeout.ms instead
                log.exception("purging the producer queue failed")

    def watch(self) -> None:
        """From now until `stop`, watch for brokers that stopped answering (`_watch`)."""
        if self._watching is None:
            self._watching = asyncio.create_task(self._watch(), name="rpcgw-kafka-watch")

    async def _watch(self) -> None:
        """Probe every ``silence / 2`` seconds while reachable, and declare the brokers
        unreachable after ``silence`` seconds in which nothing answered.

        An acknowledgement counts as an answer, so a busy cluster is not judged by one probe;
        a probe is a metadata request for the request topic, which any live broker answers. A
        probe times out after ``silence``, so a hang is noticed 1 to 1.5 x ``silence`` after it
        begins.
        """
        assert self._producer is not None, "attach() a producer first"
        producer, topic = self._producer, self._topics[0]
        self._answered = time.monotonic()
        while True:  # cancelled by stop()
            await asyncio.sleep(self._silence / 2)  # the probe cadence
            if not self.reachable:
                continue  # the recovery probe is in charge meanwhile
            losses = self._losses
            try:
                await asyncio.to_thread(producer.client.list_topics, topic, timeout=self._silence)
                self._answered = time.monotonic()
            except confluent_kafka.KafkaException:
                pass  # no answer in time
            except Exception:  # a bug must not end the watch unnoticed
                log.exception("Kafka watch probe failed")
            if losses != self._losses:
                continue  # reachability was lost and perhaps regained meanwhile: no verdict on it
            silent = time.monotonic() - max(self._answered, producer.acknowledged_at)
            if self.reachable and silent > self._silence:
                self._lost(f"no answer from the brokers for {silent:.1f} s")

    async def wait_reachable(self) -> None:
        """Probe until the brokers answer and both topics exist, with no outage meanwhile."""
        while True:
            outages = self._outages
            partitions = await in_thread_until_it_works(self.probe)
            if self._outages == outages:
                break
            log.info("Kafka reported all brokers down during the probe; probing again")
        self.reply_partitions = partitions
        self._answered = time.monotonic()
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
        metadata = self._producer.client.list_topics(topic, timeout=self._probe_timeout).topics.get(topic)
        problem = topics.unusable(topic, metadata)
        if problem is not None:
            raise TopicMissingError(problem)
        return len(metadata.partitions)

    async def stop(self) -> None:
        """Cancel a running recovery probe and the watch; later error events change nothing."""
        self._stopped = True
        tasks = [t for t in (self.recovery, self._watching) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

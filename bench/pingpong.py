"""Baseline B2: raw Kafka request-reply with no HTTP, against the real worker.

Requests are built with `kafkarpc.protocol` and produced with the gateway's own producer
config; the worker's ``echo`` answers on a reply topic of the bench's own (so the
gateway never sees these replies); a consumer ``assign()``ed to that partition reads
them. One thread does everything: produce, then wait in ``poll()`` (which releases the
GIL and returns as soon as a record arrives). That is the floor a Python client on
librdkafka can reach, with no event loop and no HTTP.

* `open_loop`: requests at fixed intended times whatever is in flight; latency from the
  intended send time. The like-for-like baseline of the HTTP open loop (the targets use it).
  By default each send leaves on time: the client waits in ``poll()`` until the last
  millisecond and a half, then, with no reply awaited, sleeps the rest (``time.sleep``, as
  the HTTP load generator's clock does), or, awaiting one, polls with no wait until it comes
  or the send is due. It never spins while idle: a spinning client keeps its core awake for
  the send, which made this floor about 0.18 ms faster at 100/s than the same client sleeping
  (docs/PERFORMANCE.md, "The floors' clients wait alike"). ``precise=False`` only waits in
  ``poll()`` (sends up to ~1 ms late, charged to the latency, and fewer wake-ups), for the
  sweeps, where the client's CPU counts.
* `paced`: strictly one request in flight at a fixed rate; a slow reply delays the next
  send, and that delay is counted, so a single stall is charged to every request behind it.
* `pipelined`: ``window`` requests in flight, a new one per reply (closed loop):
  maximum rate and CPU per request; its latency is coordinated-omission affected.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any, cast

import confluent_kafka

from gateway.settings import GatewaySettings
from kafkarpc import protocol
from kafkarpc.connection import KafkaSettings

from .latency import Latencies
from .request import RequestTemplate
from .step import Step

POLL_SECONDS = 0.1
PRECISE_SECONDS = 0.0015
"""How close to a send ``poll()`` waits before the precise open loop sleeps or polls without waiting."""
MIN_WAIT_SECONDS = 0.001
"""The shortest wait ``poll()`` can do: librdkafka counts whole milliseconds."""
DEADLINE_SECONDS = 10.0
METADATA_TIMEOUT = 10.0
"""Longest wait for watermarks or topic metadata."""


def assign_at_end(consumer: confluent_kafka.Consumer, topic: str) -> None:
    """Read partition 0 of ``topic`` from its high watermark: nothing produced before now."""
    partition = confluent_kafka.TopicPartition(topic, 0)
    _, high = consumer.get_watermark_offsets(partition, timeout=METADATA_TIMEOUT)
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, high)])


class PingPong:
    """A request-reply client on one thread; see the module docstring.

    What is produced and how replies are read are the hooks `_configs`, `_headers` and
    `_answer`: `bench.kafkafloor` runs the same loops with plain records.
    """

    target = "B2"

    def __init__(
        self, kafka: KafkaSettings, request_topic: str, reply_topic: str, body_bytes: int = 256
    ) -> None:
        self._request_topic = request_topic
        self._reply_topic = reply_topic
        self._template = RequestTemplate("kafka", 0, "/", body_bytes)
        self._index = 0
        self.exchanges = 0
        """Requests sent so far, warm-up included (the denominator of CPU per request)."""
        producer_config, consumer_config = self._configs(kafka)
        self._producer = confluent_kafka.Producer(producer_config)
        self._consumer = confluent_kafka.Consumer(consumer_config)
        assign_at_end(self._consumer, self._reply_topic)  # no earlier replies
        self._in_flight: dict[str, tuple[float, bytes]] = {}

    def _configs(self, kafka: KafkaSettings) -> tuple[dict[str, Any], dict[str, Any]]:
        """(producer, consumer) configuration: the gateway's own, so B2 moves with the gateway's."""
        gateway = GatewaySettings(request_topic=self._request_topic, reply_topic=self._reply_topic)
        group = f"bench-pingpong-{uuid.uuid4().hex}"
        return gateway.producer_config(kafka, "bench-pingpong"), gateway.consumer_config(kafka, group)

    @contextlib.contextmanager
    def set_aside(self) -> Iterator[None]:
        """Stop fetching replies while another client uses the same reply topic.

        An assigned consumer keeps fetching even when not polled, so the other client's
        replies would cost this process and the broker CPU inside that client's steps.
        Afterwards reading resumes at the end of the topic, past those replies.
        """
        self._consumer.unassign()
        try:
            yield
        finally:
            assign_at_end(self._consumer, self._reply_topic)

    def close(self) -> None:
        """Flush and close both clients."""
        self._producer.flush(5)
        self._producer.close()
        self._consumer.close()

    def paced(self, rate: float, seconds: float, warmup: float) -> Step:
        """One in flight at ``rate`` per second; latency from the intended send time."""
        latencies = Latencies()
        counts = {"sent": 0, "ok": 0, "errors": 0, "timeouts": 0}
        start = time.perf_counter()
        window_start = start + warmup
        total = round((warmup + seconds) * rate)
        last_done = window_start
        for index in range(total):
            intended = start + index / rate
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the generator, not synchronising with the system
            correlation_id = self._send(intended)
            outcome = self._await(correlation_id, intended + DEADLINE_SECONDS)
            done = time.perf_counter()
            if intended < window_start:
                continue
            last_done = done
            counts["sent"] += 1
            if outcome is None:
                counts["timeouts"] += 1
            elif outcome:
                counts["ok"] += 1
                latencies.add(int((done - intended) * 1e9))
            else:
                counts["errors"] += 1
        span = max(last_done - window_start, seconds)
        return self._step(
            "one-in-flight",
            rate=rate,
            window=1,
            seconds=seconds,
            counts=counts,
            latencies=latencies,
            span=span,
        )

    def open_loop(
        self, rate: float, seconds: float, warmup: float, *, precise: bool = True, at: float | None = None
    ) -> Step:
        """Requests at fixed intended times, however many are in flight (like the HTTP open loop).

        At a low rate this is one in flight; unlike `paced`, one slow reply does not delay the
        requests after it, so a stall is charged once, as it is to the HTTP targets.
        ``precise``: see the module docstring. ``at``: the schedule's time zero on the
        `time.perf_counter` clock (CLOCK_MONOTONIC, the same in every process on Linux), to
        run in step with load from another process; default now.
        """
        latencies = Latencies()
        counts = {"sent": 0, "ok": 0, "errors": 0, "timeouts": 0}
        start = time.perf_counter() if at is None else at
        window_start, window_end = start + warmup, start + warmup + seconds
        total = round((warmup + seconds) * rate)
        give_up = window_end + DEADLINE_SECONDS
        sent = 0
        last_done = window_start
        while (sent < total or self._in_flight) and time.perf_counter() < give_up:
            now = time.perf_counter()
            while sent < total and start + sent / rate <= now:
                self._send(start + sent / rate)
                sent += 1
            self._producer.poll(0)
            # poll() counts whole milliseconds: wait in it until just before the next send is
            # due; then sleep the rest, or, with a reply awaited, poll(0) until it or the send
            # is due, so sends leave on time and replies are not delayed. Not precise, wait at
            # least one millisecond; whatever fell due meanwhile leaves on waking, late by up
            # to that millisecond, which the latency includes.
            next_due = start + sent / rate - time.perf_counter() if sent < total else POLL_SECONDS
            if not precise:
                wait = max(MIN_WAIT_SECONDS, next_due)
            elif next_due > PRECISE_SECONDS or self._in_flight:
                wait = next_due - PRECISE_SECONDS
            else:
                time.sleep(max(0.0, next_due))  # pacing the generator, not synchronising with the system
                continue
            for intended, ok in self._receive(max(0.0, min(wait, POLL_SECONDS))):
                done = time.perf_counter()
                if not window_start <= intended < window_end:
                    continue
                last_done = done
                counts["sent"] += 1
                counts["ok" if ok else "errors"] += 1
                if ok:
                    latencies.add(int((done - intended) * 1e9))
        late = [sent_at for sent_at, _ in self._in_flight.values() if window_start <= sent_at < window_end]
        counts["sent"] += len(late)
        counts["timeouts"] += len(late)
        self._in_flight.clear()
        span = max(last_done - window_start, seconds)
        return self._step(
            "open", rate=rate, window=1, seconds=seconds, counts=counts, latencies=latencies, span=span
        )

    def pipelined(self, window: int, seconds: float, warmup: float) -> Step:
        """``window`` requests in flight; a new one leaves per reply."""
        latencies = Latencies()
        counts = {"sent": 0, "ok": 0, "errors": 0, "timeouts": 0}
        start = time.perf_counter()
        window_start, window_end = start + warmup, start + warmup + seconds
        for _ in range(window):
            self._send(time.perf_counter())
        while self._in_flight:
            now = time.perf_counter()
            if now > window_end + DEADLINE_SECONDS:
                counts["timeouts"] += len(self._in_flight)
                self._in_flight.clear()
                break
            for sent_at, ok in self._receive():
                done = time.perf_counter()
                if window_start <= sent_at < window_end:
                    counts["sent"] += 1
                    counts["ok" if ok else "errors"] += 1
                    if ok:
                        latencies.add(int((done - sent_at) * 1e9))
                if done < window_end:
                    self._send(done)
            self._producer.poll(0)
        step = self._step(
            "pipelined",
            rate=None,
            window=window,
            seconds=seconds,
            counts=counts,
            latencies=latencies,
            span=seconds,
        )
        step.coordinated_omission = True
        return step

    def _send(self, sent_at: float) -> str:
        correlation_id = uuid.uuid4().hex
        body, _ = self._template.build(self._index)
        self._index += 1
        self.exchanges += 1
        headers = self._headers(correlation_id, body)
        self._producer.produce(self._request_topic, body, correlation_id.encode(), headers=headers)
        self._in_flight[correlation_id] = (sent_at, body)
        return correlation_id

    def _headers(self, correlation_id: str, body: bytes) -> Any:
        """The request record's headers: the RPC protocol's, so the worker can answer it."""
        request = protocol.Request(
            correlation_id=correlation_id,
            reply_to=self._reply_topic,
            reply_partition=0,
            method="echo",
            deadline_ms=int((time.time() + DEADLINE_SECONDS) * 1000),
            body=body,
            content_type="application/json",
        )
        return request.headers()

    def _answer(self, message: confluent_kafka.Message) -> tuple[str, bool, bytes]:
        """(correlation id, success?, body) of a reply record, as the worker encodes it."""
        # Consumed records carry (str, bytes) header pairs; the stub's type is wider.
        headers = cast("list[tuple[str, bytes | None]] | None", message.headers())
        reply = protocol.Reply.from_record(message.value(), headers)
        return reply.correlation_id, reply.status == 200, reply.body

    def _await(self, correlation_id: str, deadline: float) -> bool | None:
        """Wait for one reply: True if correct, False if wrong, None on timeout."""
        self._producer.poll(0)
        while correlation_id in self._in_flight:
            if time.perf_counter() > deadline:
                del self._in_flight[correlation_id]
                return None
            for _, ok in self._receive():
                if not ok:
                    return False
        return True

    def _receive(self, timeout: float = POLL_SECONDS) -> list[tuple[float, bool]]:
        """Replies that arrived: (send time, correct?) per reply to a request of ours."""
        first = self._consumer.poll(timeout)
        if first is None:
            return []
        results = []
        for message in [first, *self._consumer.consume(num_messages=500, timeout=0)]:
            if message.error() is not None:
                continue
            correlation_id, success, body = self._answer(message)
            sent = self._in_flight.pop(correlation_id, None)
            if sent is not None:
                results.append((sent[0], success and body == sent[1]))
        return results

    def _step(
        self,
        mode: str,
        *,
        rate: float | None,
        window: int,
        seconds: float,
        counts: dict[str, int],
        latencies: Latencies,
        span: float,
    ) -> Step:
        return Step(
            target=self.target,
            mode=mode,
            offered_rate=rate,
            concurrency=window,
            seconds=seconds,
            sent=counts["sent"],
            ok=counts["ok"],
            errors=counts["errors"],
            timeouts=counts["timeouts"],
            achieved_rate=round(counts["ok"] / span, 1) if span > 0 else 0.0,
            latency_ms=latencies.summary(),
        )

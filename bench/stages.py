"""Stage breakdown from what can be observed without changing the gateway or worker.

A tap consumer reads the request and reply partitions during a low-rate step. librdkafka
stamps each record's CreateTime when ``produce()`` is called, so the request record
says when the gateway produced it and the reply record when the worker produced the
reply. With the load generator's wall-clock send and receive times (one host, one
clock), each request splits into:

    client send   -> request produced   HTTP in, parse, header admission, produce() call
    request produced -> reply produced  request hop: linger, broker, worker fetch, dispatch, handler
    reply produced   -> client receive  reply hop: linger, broker, gateway fetch, loop wake-up, HTTP out

CreateTime has millisecond resolution: it is taken as the middle of its millisecond
(+0.5 ms), which removes the truncation bias from medians but leaves ±0.5 ms on each
single record. Splitting further needs timestamps in headers (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Iterable

import confluent_kafka

from workers.connection import KafkaSettings

from .loadgen import Trace
from .request import RequestTemplate

SEGMENTS = ("http_in_to_produced", "produced_to_worker_out", "worker_out_to_http_out")
MIDPOINT_NS = 500_000
DRAIN_SECONDS = 10.0


class StageTap:
    """Reads record CreateTimes from the request and reply topics; start it before the load."""

    def __init__(self, kafka: KafkaSettings, topics: Iterable[str]) -> None:
        self._consumer = confluent_kafka.Consumer(
            kafka.client_config(
                {
                    "group.id": f"bench-tap-{uuid.uuid4().hex}",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                    "fetch.wait.max.ms": 10,
                }
            )
        )
        self._topics = list(topics)
        self._ends: dict[str, int] = {}
        assignment = []
        for topic in self._topics:
            low_high = self._consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, 0), timeout=10
            )
            assignment.append(confluent_kafka.TopicPartition(topic, 0, low_high[1]))
        self._consumer.assign(assignment)

    def collect(self) -> dict[str, dict[str, int]]:
        """Per topic, nonce -> CreateTime in ns, for everything produced since the tap started."""
        for topic in self._topics:
            high = self._consumer.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=10)
            self._ends[topic] = high[1]
        stamps: dict[str, dict[str, int]] = {topic: {} for topic in self._topics}
        positions = {topic: -1 for topic in self._topics}
        waited = 0.0
        while any(positions[t] + 1 < self._ends[t] for t in self._topics) and waited < DRAIN_SECONDS:
            message = self._consumer.poll(0.2)
            if message is None:
                waited += 0.2
                continue
            where = message.topic()
            if message.error() is not None or where is None:
                continue
            topic = where
            positions[topic] = message.offset() or 0
            nonce = RequestTemplate.nonce_of(message.value() or b"")
            kind, millis = message.timestamp()
            if nonce is not None and kind == confluent_kafka.TIMESTAMP_CREATE_TIME:
                stamps[topic][nonce] = millis * 1_000_000 + MIDPOINT_NS
        self._consumer.close()
        return stamps


def breakdown(trace: Trace, produced: dict[str, int], replied: dict[str, int]) -> dict[str, object]:
    """Median, p90 and mean of each segment in milliseconds, over requests seen at every point."""
    samples: dict[str, list[float]] = {name: [] for name in SEGMENTS}
    for nonce, (sent, received) in trace.items():
        request_at, reply_at = produced.get(nonce), replied.get(nonce)
        if request_at is None or reply_at is None:
            continue
        samples["http_in_to_produced"].append((request_at - sent) / 1e6)
        samples["produced_to_worker_out"].append((reply_at - request_at) / 1e6)
        samples["worker_out_to_http_out"].append((received - reply_at) / 1e6)
    result: dict[str, object] = {"requests": len(samples[SEGMENTS[0]])}
    for name, values in samples.items():
        if len(values) >= 2:
            result[name] = {
                "p50": round(statistics.median(values), 3),
                "p90": round(statistics.quantiles(values, n=10)[-1], 3),
                "mean": round(statistics.fmean(values), 3),
            }
    return result

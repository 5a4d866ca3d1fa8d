"""The Kafka floor (FK): request-reply through Kafka with two plain confluent-kafka processes, no HTTP.

* The client, `KafkaFloorClient`, in the bench process: B2's loops (`bench.pingpong.PingPong`:
  open loop with latency from the intended send time, pipelined for the maximum rate) with
  plain records. A request is the same 256-byte JSON body as B2's and the HTTP loads',
  keyed by a correlation id, with no headers; a reply is correct when it carries the key
  and the body unchanged.
* The server, ``python -m bench.kafkafloor serve --requests T --replies T``, in a process
  of its own (`bench.stack.Stack.kafka_floor` starts it): it waits in a blocking
  ``poll()`` for each request and produces the reply at once, key and value as received.

No event loop, no protocol headers, no worker runtime: each side hands over with a
blocking ``poll()``. Both produce with `PRODUCER` (``linger.ms`` 0: nothing waits for a
batch) and fetch with `CONSUMER` (``fetch.wait.max.ms`` 5, ``fetch.min.bytes`` 1), on
top of the connection settings from ``KAFKA_*`` (the floor's own settings win, so an
experiment with ``KAFKA_PROPERTIES`` moves S and the baselines, not the floor). The
topics are the floor's own (1 partition, replication factor 1), read from their end.
"""

from __future__ import annotations

import argparse
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

import confluent_kafka

from kafkarpc.connection import KafkaSettings

from .pingpong import METADATA_TIMEOUT, PingPong, assign_at_end

PRODUCER: dict[str, Any] = {"linger.ms": 0, "socket.nagle.disable": True, "acks": "all"}
CONSUMER: dict[str, Any] = {"fetch.wait.max.ms": 5, "fetch.min.bytes": 1, "enable.auto.commit": False}
POLL_SECONDS = 0.1
"""The server's longest wait in ``poll()``: how soon it notices SIGTERM."""


def producer_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The floor's producer: the connection from ``KAFKA_*``, then `PRODUCER`."""
    return {**kafka.client_config(), **PRODUCER}


def consumer_config(kafka: KafkaSettings, role: str) -> dict[str, Any]:
    """The floor's consumer: the connection from ``KAFKA_*``, then `CONSUMER`; a group of its own."""
    return {**kafka.client_config(), **CONSUMER, "group.id": f"bench-kafkafloor-{role}-{uuid.uuid4().hex}"}


class KafkaFloorClient(PingPong):
    """The floor's client: `PingPong`'s loops with plain records and the floor's settings."""

    target = "FK"

    def _configs(self, kafka: KafkaSettings) -> tuple[dict[str, Any], dict[str, Any]]:
        return producer_config(kafka), consumer_config(kafka, "client")

    def _headers(self, correlation_id: str, body: bytes) -> Any:
        return None  # the key is the correlation id; the body is the request

    def _answer(self, message: confluent_kafka.Message) -> tuple[str, bool, bytes]:
        key, value = message.key(), message.value()
        return (key or b"").decode(), value is not None, value or b""


def serve(kafka: KafkaSettings, requests: str, replies: str, ready: Path | None = None) -> None:
    """Answer each request on ``requests`` with the same key and value on ``replies``, until SIGTERM.

    Positioned at the end of ``requests`` and with ``replies``' metadata loaded before
    ``ready`` is created, so a client that starts after that loses nothing and its first
    reply waits for no lookup.
    """
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    producer = confluent_kafka.Producer(producer_config(kafka))
    consumer = confluent_kafka.Consumer(consumer_config(kafka, "server"))
    try:
        assign_at_end(consumer, requests)
        producer.list_topics(replies, timeout=METADATA_TIMEOUT)
        if ready is not None:
            ready.touch()
        while not stopping:
            message = consumer.poll(POLL_SECONDS)
            if message is None or message.error() is not None:
                continue
            producer.produce(replies, message.value(), message.key(), partition=0)
            producer.poll(0)  # delivery reports: none awaited, but they must not pile up
    finally:
        producer.flush(METADATA_TIMEOUT)
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    """``serve``: see the module docstring. The connection comes from ``KAFKA_*``."""
    parser = argparse.ArgumentParser(prog="python -m bench.kafkafloor", description=__doc__)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("--requests", required=True, help="request topic (partition 0 is read)")
    parser.add_argument("--replies", required=True, help="reply topic (partition 0 is written)")
    parser.add_argument("--ready-file", type=Path, help="created once the server is positioned")
    args = parser.parse_args(argv)
    serve(KafkaSettings(), args.requests, args.replies, args.ready_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Records straight on Kafka: garbage for the consumers to survive, and reading topics back."""

from __future__ import annotations

import collections
import time
import uuid
from collections.abc import Callable

import orjson
from confluent_kafka import OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from kafkarpc import protocol


def inject_garbage(bootstrap: str, requests: str, replies: str, count: int) -> None:
    """``count`` malformed records on ``requests`` and on partition 0 of ``replies``."""
    producer = Producer({"bootstrap.servers": bootstrap})
    now = str(int(time.time() * 1000) + 60_000).encode()
    good_id = uuid.uuid4().hex.encode()
    request_headers: list[list[tuple[str, str | bytes | None]]] = [
        [],
        [(protocol.CORRELATION_ID, b"not-hex")],
        [(protocol.CORRELATION_ID, good_id), (protocol.CORRELATION_ID, uuid.uuid4().hex.encode())],
        [
            (protocol.CORRELATION_ID, good_id),
            (protocol.REPLY_TO, replies),
            (protocol.DEADLINE, b"soon"),
        ],
        [
            (protocol.CORRELATION_ID, good_id),
            (protocol.REPLY_TO, b"__consumer_offsets"),
            (protocol.REPLY_PARTITION, b"0"),
            (protocol.METHOD, b"chaos.echo"),
            (protocol.DEADLINE, now),
        ],
    ]
    for index in range(count):
        producer.produce(requests, value=bytes([index]) * 7, headers=request_headers[index % 5])
    reply_headers: list[list[tuple[str, str | bytes | None]]] = [
        [],
        [(protocol.CORRELATION_ID, b"x"), (protocol.STATUS, b"200")],
        [(protocol.CORRELATION_ID, good_id), (protocol.STATUS, b"abc")],
        [(protocol.CORRELATION_ID, good_id), (protocol.CORRELATION_ID, good_id), (protocol.STATUS, b"200")],
    ]
    for index in range(count):
        producer.produce(replies, value=b"\xff\xfe", partition=0, headers=reply_headers[index % 4])
    if producer.flush(30) != 0:
        raise RuntimeError("garbage records not delivered")


def topic_names(bootstrap: str) -> set[str]:
    """Every topic on the cluster."""
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def end_offset(bootstrap: str, topic: str) -> int:
    """High watermark of partition 0 of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def dead_letter_reasons(bootstrap: str, topic: str) -> dict[str, int]:
    """Dead letters by reason header; the garbage records are the 7-byte values."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}"})
    try:
        end = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
        consumer.assign([TopicPartition(topic, 0, 0)])
        reasons: collections.Counter[str] = collections.Counter()
        while sum(reasons.values()) < end:
            batch = [m for m in consumer.consume(100, timeout=5) if m.error() is None]
            if not batch:
                break
            for record in batch:
                reason = dict(record.headers() or []).get(protocol.DEAD_LETTER_REASON) or b"?"
                source = "garbage" if len(record.value() or b"") == 7 else "via gateway"
                text = reason.decode() if isinstance(reason, bytes) else reason
                reasons[f"{text} ({source})"] += 1
        return dict(reasons)
    finally:
        consumer.close()


def nonces_in(bootstrap: str, topic: str, partitions: int) -> set[str]:
    """The ``nonce`` of every record in ``topic`` (JSON bodies)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}"})
    try:
        ends = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        ]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        found: set[str] = set()
        seen = 0
        while seen < sum(ends):
            batch = [m for m in consumer.consume(500, timeout=5) if m.error() is None]
            if not batch:
                break
            seen += len(batch)
            found.update(str(orjson.loads(m.value() or b"{}")["nonce"]) for m in batch)
        return found
    finally:
        consumer.close()


def appended_past_deadline(
    bootstrap: str, topic: str, partitions: int
) -> tuple[int, list[tuple[float, float]]]:
    """Requests in ``topic`` (a ``LogAppendTime`` topic): how many, and for each one the broker
    appended after its ``rpc-deadline``, ``(appended, deadline)`` in epoch seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}"})
    try:
        ends = [
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)
        ]
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        requests, seen = 0, 0
        late: list[tuple[float, float]] = []
        while seen < sum(ends):
            batch = [m for m in consumer.consume(500, timeout=5) if m.error() is None]
            if not batch:
                raise TimeoutError(f"read {seen} of the {sum(ends)} records of {topic}")
            seen += len(batch)
            for message in batch:
                deadline = dict(message.headers() or []).get(protocol.DEADLINE)
                if not isinstance(deadline, bytes):
                    continue  # a cancel record
                requests += 1
                kind, appended = message.timestamp()
                if kind != TIMESTAMP_LOG_APPEND_TIME:
                    raise ValueError(f"{topic} does not use LogAppendTime")
                if appended > int(deadline):
                    late.append((appended / 1000, int(deadline) / 1000))
        return requests, late
    finally:
        consumer.close()


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    """Poll ``check`` (state of another process or the cluster) until true or ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)  # polling another process's counters; there is no event to await
    return True

"""`AsyncProducer`'s eager and batching lanes on a real broker: who sends what, and in order."""

from __future__ import annotations

import asyncio

from kafkarpc.clients import ConfluentClients
from kafkarpc.connection import PRODUCER_DEFAULTS
from kafkarpc.producer import AsyncProducer, Delivery

from .harness import Topics

LINGER_MS = 20
CROWDED = LINGER_MS / 1000 / 10
"""A gap well within the linger: such records are batched."""


class Clock:
    """A monotonic clock the test moves, so "long after" and "just after" need no sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_each_key_keeps_its_order_across_the_lanes(topics: Topics) -> None:
    """Rounds of: a keyed record long after the last (eager), records of the same key just
    after it while it is in flight (eager too, to stay behind it), then a burst of other keys
    (batched), and a record of the first key once its records are acknowledged (batched). The
    partition must hold every record, each key's in the order sent (records of different keys
    may overtake each other across lanes), and the lanes the expected counts."""
    topic = topics.events  # 2 partitions: every record names partition 0
    config = {**topics.kafka_settings().client_config(PRODUCER_DEFAULTS), "linger.ms": LINGER_MS}
    clock = Clock()
    producer = AsyncProducer(ConfluentClients(), config, clock=clock)
    producer.start()
    sent: list[tuple[bytes, bytes]] = []
    expected_eager = 0

    def send(value: bytes, key: bytes) -> asyncio.Future[Delivery]:
        sent.append((key, value))
        return producer.send(topic, value, key, [], 0)

    try:
        for round_number in range(10):
            key = b"first-%d" % round_number
            clock.now += 1.0  # long after the last record: at once
            alone = send(b"%d-alone" % round_number, key)
            clock.now += CROWDED
            behind = [send(b"%d-behind-%d" % (round_number, n), key) for n in range(3)]
            clock.now += CROWDED
            burst = [send(b"%d-burst-%d" % (round_number, n), b"burst-%d" % n) for n in range(20)]
            expected_eager += 4
            await asyncio.gather(alone, *behind, *burst)
            clock.now += CROWDED
            await send(b"%d-after" % round_number, key)  # acknowledged before: free, and crowded
            assert producer.keys_in_flight == 0
    finally:
        left = await producer.stop(10.0)

    assert left == 0
    assert producer.eager_records == expected_eager
    written = [(m.key(), m.value()) for m in topics.records(topic, 2)]
    assert sorted(written) == sorted(sent)
    for key in {key for key, _ in sent}:
        assert [r for r in written if r[0] == key] == [r for r in sent if r[0] == key], key

"""`AsyncProducer`'s two lanes: at once when records are sparse, batched when they crowd, and
a key's records in order."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from typing import Any

import pytest

from kafkarpc.errors import DeliveryError
from kafkarpc.producer import AsyncProducer
from tests.fakekafka import FakeKafka, FakeProducer
from tests.loopturn import next_turn

LINGER_MS = 5
LINGER = LINGER_MS / 1000


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def lanes(kafka: FakeKafka) -> tuple[FakeProducer, FakeProducer]:
    """(eager, batching), told apart by their linger."""
    (eager,) = [p for p in kafka.producers if p.config["linger.ms"] == 0]
    (batching,) = [p for p in kafka.producers if p.config["linger.ms"] != 0]
    return eager, batching


def producer(config: dict[str, Any] | None = None, **options: Any) -> tuple[AsyncProducer, FakeKafka]:
    kafka = FakeKafka({"t": 1})
    return AsyncProducer(kafka, {"linger.ms": LINGER_MS, **(config or {})}, **options), kafka


def test_sparse_records_leave_at_once_and_crowded_ones_join_a_batch() -> None:
    clock = Clock()
    async_producer, kafka = producer(clock=clock)
    eager, batching = lanes(kafka)
    taken: list[str] = []

    def produce(gap: float) -> None:
        clock.now += gap
        before = eager.produced
        async_producer.produce("t", b"x", None, [])
        taken.append("eager" if eager.produced > before else "batching")

    for _ in range(5):
        produce(20 * LINGER)  # sparse
    for _ in range(10):
        produce(LINGER / 10)  # crowded: once about EAGER_LOAD arrived within the window, batched
    produce(1.0)  # a pause: sparse again

    assert taken == ["eager"] * 7 + ["batching"] * 8 + ["eager"]
    assert (async_producer.eager_records, batching.produced) == (8, 8)


def test_a_key_keeps_the_lane_of_its_unacknowledged_records() -> None:
    clock = Clock()
    async_producer, kafka = producer(clock=clock)
    eager, batching = lanes(kafka)

    async_producer.produce("t", b"request", b"id-1", [])  # sparse: eager
    async_producer.produce("t", b"request", b"id-2", [])
    async_producer.produce("t", b"request", b"id-3", [])
    async_producer.produce("t", b"cancel", b"id-1", [])  # crowded now, but id-1 is in flight on eager
    async_producer.produce("t", b"request", b"id-4", [])  # crowded, and free: batched
    assert (eager.produced, batching.produced) == (4, 1)
    assert async_producer.keys_in_flight == 4

    eager.poll(0)  # id-1's records are acknowledged: the key is free again
    assert async_producer.keys_in_flight == 1
    async_producer.produce("t", b"again", b"id-1", [])
    assert (eager.produced, batching.produced) == (4, 2)


def test_no_key_ever_has_unacknowledged_records_on_both_lanes() -> None:
    clock = Clock()
    async_producer, kafka = producer(clock=clock)
    eager, batching = lanes(kafka)
    in_flight = {id(eager): Counter[bytes](), id(batching): Counter[bytes]()}
    chance = random.Random(17)
    for value in range(5_000):
        action = chance.random()
        if action < 0.15:
            eager.poll(0)
            in_flight[id(eager)].clear()
        elif action < 0.3:
            batching.poll(0)
            in_flight[id(batching)].clear()
        else:
            clock.now += chance.expovariate(1 / (3 * LINGER))  # about EAGER_LOAD per window
            key = b"k%d" % chance.randrange(8)
            before = eager.produced
            async_producer.produce("t", str(value).encode(), key, [])
            in_flight[id(eager) if eager.produced > before else id(batching)][key] += 1
            both = set(in_flight[id(eager)]) & set(in_flight[id(batching)])
            assert not both, f"keys {both} on both lanes after record {value}"
        keys = set(in_flight[id(eager)]) | set(in_flight[id(batching)])
        assert async_producer.keys_in_flight == len(keys)

    # Both lanes were used many times each, so the check above was exercised.
    assert min(eager.produced, batching.produced) > 1_000
    eager.poll(0)
    batching.poll(0)
    assert async_producer.keys_in_flight == 0


async def test_a_record_refused_at_once_frees_its_key() -> None:
    async_producer, kafka = producer()
    kafka.queue_full = True

    with pytest.raises(DeliveryError):
        async_producer.produce("t", b"1", b"id-1", [])
    refused = async_producer.send("t", b"2", b"id-2", [])

    assert isinstance(refused.exception(), DeliveryError)
    assert async_producer.keys_in_flight == 0


@pytest.mark.parametrize(
    ("config", "options"),
    [({}, {"eager": False}), ({"linger.ms": 0}, {})],
    ids=["eager-off", "linger-zero"],
)
def test_one_producer_when_there_is_nothing_to_batch_or_eager_is_off(
    config: dict[str, Any], options: dict[str, Any]
) -> None:
    async_producer, kafka = producer(config, **options)

    async_producer.produce("t", b"1", b"id-1", [])
    async_producer.produce("t", b"2", b"id-2", [])

    assert len(kafka.producers) == 1
    assert kafka.producers[0].produced == 2
    assert async_producer.keys_in_flight == 0


def test_the_eager_lane_copies_the_config_but_its_linger() -> None:
    kafka = FakeKafka({"t": 1})
    AsyncProducer(kafka, {"queue.buffering.max.ms": 7, "acks": "all"})  # linger.ms by its alias
    batching, eager = kafka.producers

    assert (batching.config["queue.buffering.max.ms"], "linger.ms" in batching.config) == (7, False)
    assert (eager.config["linger.ms"], "queue.buffering.max.ms" in eager.config) == (0, False)
    assert eager.config["acks"] == batching.config["acks"] == "all"


async def test_stop_flushes_both_lanes_and_hands_over_their_reports() -> None:
    async_producer, kafka = producer(clock=Clock())  # not started: only stop's flush serves reports
    sends = [async_producer.send("t", b"%d" % n, b"k%d" % n, []) for n in range(5)]  # 3 eager, 2 batched
    eager, batching = lanes(kafka)
    assert (eager.produced, batching.produced) == (3, 2)
    assert not any(send.done() for send in sends)

    left = await async_producer.stop(1.0)
    deliveries = await asyncio.wait_for(asyncio.gather(*sends), 5)

    assert left == 0
    assert [d.offset for d in deliveries] == [0, 1, 2, 3, 4]
    assert async_producer.keys_in_flight == 0


async def test_a_record_that_cannot_be_produced_frees_its_key() -> None:
    async_producer, _ = producer()

    with pytest.raises(TypeError):
        async_producer.produce("t", b"1", b"id-1", [("h", 1)])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        async_producer.send("t", b"2", b"id-2", [("h", 2)])  # type: ignore[list-item]

    assert async_producer.keys_in_flight == 0


def test_one_producer_when_only_errors_are_reported() -> None:
    """Without a report for every record, keys could never be settled: no second lane."""
    async_producer, kafka = producer({"delivery.report.only.error": "true"})

    async_producer.produce("t", b"1", b"id-1", [])

    assert len(kafka.producers) == 1
    assert async_producer.keys_in_flight == 0


async def test_purging_fails_the_queued_records_of_both_lanes_and_frees_their_keys() -> None:
    """What the brokers never got is reported as not sent: a caller is answered at once."""
    async_producer, kafka = producer(clock=Clock())
    failed: list[tuple[bytes | None, str]] = []
    async_producer.start(lambda message, error: failed.append((message.key(), error.name())))
    try:
        kafka.hung = True
        sends = [async_producer.send("t", b"%d" % n, b"s%d" % n, []) for n in range(5)]  # 3 eager, 2 batched
        async_producer.produce("t", b"p", b"p", [])
        eager, batching = lanes(kafka)
        assert len(eager.queued) + len(batching.queued) == 6

        async_producer.purge_queued()
        outcomes = await asyncio.wait_for(asyncio.gather(*sends, return_exceptions=True), 5)
        kafka.hung = False
    finally:
        await async_producer.stop(1.0)

    assert [p.purges for p in (eager, batching)] == [[(True, False)], [(True, False)]]
    assert all(isinstance(o, DeliveryError) and o.error.name() == "_PURGE_QUEUE" for o in outcomes)
    assert failed == [(b"p", "_PURGE_QUEUE")]
    assert kafka.records("t") == []
    assert async_producer.keys_in_flight == 0


async def test_acknowledged_at_moves_with_acknowledgements_only() -> None:
    async_producer, kafka = producer()
    async_producer.start()
    try:
        assert async_producer.acknowledged_at == 0.0
        await async_producer.send("t", b"ok", b"k", [])
        acknowledged = async_producer.acknowledged_at
        assert acknowledged > 0.0
        kafka.refused.add("t")
        with pytest.raises(DeliveryError):
            await async_producer.send("t", b"refused", b"k", [])
        assert async_producer.acknowledged_at == acknowledged
    finally:
        await async_producer.stop(1.0)


def polls_in_flight(client: FakeProducer) -> tuple[list[float], threading.Event]:
    """The timeouts of ``client``'s polls made while it had records in flight, and an event set
    at the second of them."""
    timeouts: list[float] = []
    polled_twice = threading.Event()
    serve = client.poll

    def poll(timeout: float = -1) -> int:
        if len(client):
            timeouts.append(timeout)
            if len(timeouts) == 2:
                polled_twice.set()
        return serve(timeout)

    client.poll = poll  # type: ignore[method-assign]
    return timeouts, polled_twice


@pytest.mark.parametrize(
    ("interval", "waited_sends", "beat"), [(0.001, False, True), (0.001, True, False), (0.0, False, False)]
)
async def test_sends_in_flight_are_served_on_the_beat_unless_their_callers_wait(
    interval: float, waited_sends: bool, beat: bool
) -> None:
    """With a report interval the poll thread polls without waiting while records are in flight
    (one hand-over for all the reports of a beat), unless a `send` caller waits for its report;
    without one it waits in every poll."""
    async_producer, kafka = producer(eager=False, report_interval=interval, waited_sends=waited_sends)
    (client,) = kafka.producers
    timeouts, polled_twice = polls_in_flight(client)
    kafka.hung = True  # the records stay in flight: no report until the cluster answers
    sends = [async_producer.send("t", b"%d" % n, None, []) for n in range(3)]
    async_producer.start()
    assert await asyncio.to_thread(polled_twice.wait, 5)
    kafka.hung = False
    deliveries = await asyncio.wait_for(asyncio.gather(*sends), 5)
    await async_producer.stop(1.0)

    assert [d.offset for d in deliveries] == [0, 1, 2]
    assert (0 in timeouts) is beat, timeouts  # the beat polls at once; otherwise poll() waits


async def test_produced_records_are_served_on_the_beat_even_where_send_callers_wait() -> None:
    async_producer, kafka = producer(eager=False, report_interval=0.001, waited_sends=True)
    (client,) = kafka.producers
    timeouts, polled_twice = polls_in_flight(client)
    kafka.hung = True
    for n in range(3):
        async_producer.produce("t", b"%d" % n, None, [])
    async_producer.start()
    assert await asyncio.to_thread(polled_twice.wait, 5)
    kafka.hung = False
    assert await async_producer.stop(1.0) == 0

    assert client.produced == 3
    assert 0 in timeouts, timeouts  # nobody waits for a produce() record's success


async def test_the_beat_goes_on_while_it_finds_reports_and_ends_on_the_first_that_finds_none() -> None:
    """Between sparse records nothing may be in flight when the poll thread looks, though
    reports keep coming: a beat that served some is followed by another; one that served none,
    with nothing in flight, by a poll that waits (the next report, after a quiet spell, is
    served at once)."""
    async_producer, kafka = producer(eager=False, report_interval=0.001, waited_sends=False)
    (client,) = kafka.producers
    polls: list[tuple[float, int, int]] = []  # (timeout, records in flight before, reports served)
    beat, waited_after_beats = threading.Event(), threading.Event()
    serve = client.poll

    def poll(timeout: float = -1) -> int:
        in_flight = len(client)
        served = serve(timeout)
        polls.append((timeout, in_flight, served))
        if timeout == 0:
            beat.set()
        elif any(t == 0 and n for t, _, n in polls):
            waited_after_beats.set()
        return served

    client.poll = poll  # type: ignore[method-assign]
    kafka.hung = True
    for n in range(3):
        async_producer.produce("t", b"%d" % n, None, [])
    async_producer.start()
    assert await asyncio.to_thread(beat.wait, 5)
    kafka.hung = False  # the next beat serves all three; then nothing is in flight
    assert await asyncio.to_thread(waited_after_beats.wait, 5)
    assert await async_producer.stop(1.0) == 0

    first_wait = next(i for i, (t, _, _) in enumerate(polls) if t and i and polls[i - 1][0] == 0)
    beats = polls[:first_wait]
    assert all(t == 0 for t, _, _ in beats), polls
    assert sum(n for _, _, n in beats) == 3, polls  # the beats served every report
    assert beats[-1][1:] == (0, 0), polls  # the last beat: nothing in flight, nothing served
    assert beats[-2][2] > 0, polls  # the one before it served the last reports


def held_after_serving(client: FakeProducer) -> tuple[threading.Event, threading.Event]:
    """Events: ``handed``, set when the poll thread has handed over the reports of the first poll
    that served any (it is then in its next poll), which waits until ``release`` is set."""
    served, handed, release = threading.Event(), threading.Event(), threading.Event()
    serve = client.poll

    def poll(timeout: float = -1) -> int:
        if served.is_set() and not release.is_set():
            handed.set()
            release.wait(5)
        count = serve(timeout)
        if count:
            served.set()
        return count

    client.poll = poll  # type: ignore[method-assign]
    return handed, release


@pytest.mark.parametrize("waited_sends", [False, True])
async def test_a_beats_reports_wait_for_the_loop_to_collect_them_where_nobody_waits(
    waited_sends: bool,
) -> None:
    """The worker's replies: their acknowledgements only finish offsets, so a beat's reports do
    not wake the loop; the loop takes them when it wakes for something else (`collect`). Where a
    `send` caller waits, each hand-over wakes the loop."""
    async_producer, kafka = producer(eager=False, report_interval=0.001, waited_sends=waited_sends)
    (client,) = kafka.producers
    handed, release = held_after_serving(client)
    sends = [async_producer.send("t", b"%d" % n, None, []) for n in range(3)]
    async_producer.start()
    try:
        assert await asyncio.to_thread(handed.wait, 5)
        await next_turn()  # a hand-over that woke the loop has settled them by now
        assert [send.done() for send in sends] == [waited_sends] * 3
        async_producer.collect()
        assert [send.result().offset for send in sends] == [0, 1, 2]
    finally:
        release.set()
        await async_producer.stop(1.0)


async def test_reports_the_loop_does_not_collect_wake_it_at_the_next_beat() -> None:
    async_producer, kafka = producer(eager=False, report_interval=0.001, waited_sends=False)
    (client,) = kafka.producers
    handed, release = held_after_serving(client)
    sends = [async_producer.send("t", b"%d" % n, None, []) for n in range(3)]
    async_producer.start()
    assert await asyncio.to_thread(handed.wait, 5)
    release.set()  # the next beat finds them still handed over: it wakes the loop
    deliveries = await asyncio.wait_for(asyncio.gather(*sends), 5)
    await async_producer.stop(1.0)
    assert [d.offset for d in deliveries] == [0, 1, 2]

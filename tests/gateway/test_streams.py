"""Topic feeds on the in-memory cluster: one consumer per topic, bounded subscribers, no leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from typing import Any

import orjson
import pytest

from gateway.errors import UnavailableError, UnknownTopicError
from gateway.feeds import Streams
from gateway.metrics import GatewayMetrics
from gateway.streams import EventStreamEndpoint
from kafkarpc import protocol
from tests.fakekafka import FakeConsumer, FakeKafka

TOPIC = "events"


@pytest.fixture
async def streams(cluster: FakeKafka) -> AsyncIterator[Streams]:
    streams = Streams(
        cluster,
        {"group.id": "unused"},
        frozenset({TOPIC, "absent"}),
        max_streams=3,
        buffer=5,
        timeout=1.0,
        metrics=GatewayMetrics(10.0, 10),
    )
    yield streams
    await streams.close()


def stream_consumers(cluster: FakeKafka) -> list[FakeConsumer]:
    return [
        c for c in cluster.consumers if str(c.config.get("group.id", "")).startswith("rpc-gateway-stream-")
    ]


async def test_subscribers_of_one_topic_share_one_consumer_and_see_what_comes_after_joining(
    cluster: FakeKafka, streams: Streams
) -> None:
    cluster.append(TOPIC, b"before")
    first = await streams.subscribe(TOPIC)
    second = await streams.subscribe(TOPIC)
    assert len(stream_consumers(cluster)) == 1
    cluster.append(TOPIC, b'{"n": 1}', key=b"k")
    for subscription in (first, second):
        batch = await asyncio.wait_for(subscription.next(), 5)
        assert batch is not None
        (document,) = batch.documents
        assert orjson.loads(document) == {
            "topic": TOPIC,
            "partition": 0,
            "offset": 1,
            "key": "k",
            "value": '{"n": 1}',
        }
        assert batch.events == b"id: 0-1\nevent: message\ndata: " + document + b"\n\n"


async def test_a_subscriber_that_falls_behind_is_cut_off_and_the_others_are_not_slowed(
    cluster: FakeKafka, streams: Streams
) -> None:
    slow = await streams.subscribe(TOPIC)
    fast = await streams.subscribe(TOPIC)
    received = 0
    for n in range(12):
        cluster.append(TOPIC, b"%d" % n)
        batch = await asyncio.wait_for(fast.next(), 5)  # the fast one reads each record as it comes
        assert batch is not None
        received += len(batch.documents)
    assert received == 12
    assert slow.ended
    assert slow.overflowed
    assert await slow.next() is None  # ended, and its queue was dropped, not kept
    assert not fast.ended
    assert streams.open_streams == 1
    assert streams._metrics.registry.get_sample_value("rpcgw_stream_overflows_total") == 1


async def test_the_last_subscriber_leaving_closes_the_topics_consumer(
    cluster: FakeKafka, streams: Streams
) -> None:
    subscription = await streams.subscribe(TOPIC)
    (consumer,) = stream_consumers(cluster)
    streams.unsubscribe(subscription)
    await cluster.wait_for(lambda: consumer.closed)
    again = await streams.subscribe(TOPIC)
    assert len(stream_consumers(cluster)) == 2
    assert not again.ended


async def test_a_quiet_subscriber_is_nudged_for_a_keepalive_then_gets_records(cluster: FakeKafka) -> None:
    streams = Streams(
        cluster,
        {},
        frozenset({TOPIC}),
        max_streams=2,
        buffer=5,
        timeout=1.0,
        metrics=GatewayMetrics(10.0, 10),
        keepalive=0.01,
    )
    try:
        quiet = await streams.subscribe(TOPIC)
        assert await asyncio.wait_for(quiet.next(), 5) is None  # nudged: nothing came
        assert not quiet.ended
        cluster.append(TOPIC, b"x")
        batch = await asyncio.wait_for(quiet.next(), 5)
        assert batch is not None
    finally:
        await streams.close()


async def test_the_cap_counts_subscriptions_across_topics(streams: Streams) -> None:
    for _ in range(3):
        await streams.subscribe(TOPIC)
    with pytest.raises(UnavailableError):
        await streams.subscribe(TOPIC)


async def test_a_missing_topic_is_refused_and_its_consumer_closed(
    cluster: FakeKafka, streams: Streams
) -> None:
    with pytest.raises(UnknownTopicError):
        await streams.subscribe("absent")
    with pytest.raises(UnknownTopicError):
        await streams.subscribe("not-allow-listed")
    (consumer,) = stream_consumers(cluster)
    await cluster.wait_for(lambda: consumer.closed)
    assert streams.open_streams == 0


async def test_brokers_that_do_not_answer_are_503_and_the_consumer_is_closed(
    cluster: FakeKafka, streams: Streams
) -> None:
    cluster.down = True
    with pytest.raises(UnavailableError):
        await streams.subscribe(TOPIC)
    (consumer,) = stream_consumers(cluster)
    await cluster.wait_for(lambda: consumer.closed)
    assert consumer.used_after_close == []


async def test_a_watermark_query_that_times_out_is_503_not_a_crash(
    cluster: FakeKafka, streams: Streams
) -> None:
    cluster.watermarks_time_out = True
    with pytest.raises(UnavailableError, match="no watermarks"):
        await streams.subscribe(TOPIC)
    assert streams.open_streams == 0


class Caller:
    """An ASGI caller of `EventStreamEndpoint`: what it sent, and a switch to hang up."""

    def __init__(self) -> None:
        self.sent: list[MutableMapping[str, Any]] = []
        self.chunk = asyncio.Event()
        self.gone = asyncio.Event()

    async def receive(self) -> MutableMapping[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: MutableMapping[str, Any]) -> None:
        self.sent.append(message)
        self.chunk.set()

    async def next_chunk(self) -> bytes:
        self.chunk.clear()
        await asyncio.wait_for(self.chunk.wait(), 5)
        body = self.sent[-1]["body"]
        assert isinstance(body, bytes)
        return body


def scope(path: str, method: str = "GET") -> dict[str, object]:
    return {"type": "http", "method": method, "path": path, "headers": [], "extensions": {}}


async def test_sse_sends_the_topics_events_until_the_caller_hangs_up(
    cluster: FakeKafka, streams: Streams
) -> None:
    caller = Caller()
    endpoint = EventStreamEndpoint(streams)
    serving = asyncio.create_task(endpoint(scope(f"/stream/{TOPIC}"), caller.receive, caller.send))
    assert await caller.next_chunk() == b": streaming events\n\n"
    assert caller.sent[0]["status"] == 200
    cluster.append(TOPIC, b"v")
    assert (await caller.next_chunk()).startswith(b"id: 0-0\nevent: message\ndata: ")
    assert streams.open_streams == 1
    caller.gone.set()
    await asyncio.wait_for(serving, 5)
    assert streams.open_streams == 0


async def test_sse_refusals_are_problems(streams: Streams) -> None:
    for path, method, status in [(f"/stream/{TOPIC}", "POST", 405), ("/stream/not-allowed", "GET", 404)]:
        caller = Caller()
        await EventStreamEndpoint(streams)(scope(path, method), caller.receive, caller.send)
        assert caller.sent[0]["status"] == status
        assert (b"content-type", protocol.PROBLEM_JSON.encode()) in caller.sent[0]["headers"]

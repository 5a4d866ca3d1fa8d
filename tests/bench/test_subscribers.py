"""The bench's SSE subscriber: chunked transfer coding and events parsed however TCP splits them."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from bench.subscribers import Arrivals, Subscriber, SubscriberError

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n"
)


class _Transport:
    """The two calls a `Subscriber` makes on its transport."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _record(seq: int, offset: int) -> bytes:
    value = orjson.dumps({"seq": seq, "produced_ns": 1_000 + seq}).decode()
    document = orjson.dumps({"topic": "t", "partition": 0, "offset": offset, "key": None, "value": value})
    return b"id: 0-%d\nevent: message\ndata: %s\n\n" % (offset, document)


def _stream(*chunks: bytes) -> bytes:
    return HEAD + b"".join(_chunk(chunk) for chunk in chunks)


async def _subscriber(arrivals: Arrivals) -> tuple[Subscriber, _Transport]:
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    subscriber = Subscriber(b"GET /stream/t HTTP/1.1\r\n\r\n", arrivals, ready)
    transport = _Transport()
    subscriber.connection_made(transport)  # type: ignore[arg-type]
    return subscriber, transport


@pytest.mark.parametrize("piece", [1, 2, 7, 64, 10_000])
async def test_records_are_parsed_whatever_the_read_sizes(piece: int) -> None:
    arrivals = Arrivals(1)
    subscriber, transport = await _subscriber(arrivals)
    # Two records in one chunk (one fetched batch), a keepalive, a third record.
    data = _stream(b": streaming t\n\n", _record(0, 5) + _record(1, 6), b": keepalive\n\n", _record(2, 7))
    for start in range(0, len(data), piece):
        subscriber.data_received(data[start : start + piece])
    assert transport.written.startswith(b"GET /stream/t ")
    assert subscriber.ready.done()
    assert subscriber.ready.exception() is None
    assert subscriber.seqs == [0, 1, 2]
    assert subscriber.keepalives == 1
    assert arrivals.produced == {0: 1_000, 1: 1_001, 2: 1_002}
    assert all(len(times) == 1 for times in arrivals.times.values())
    assert not subscriber.lost_early


async def test_a_record_that_reached_everyone_wakes_its_waiter() -> None:
    arrivals = Arrivals(2)
    first, _ = await _subscriber(arrivals)
    second, _ = await _subscriber(arrivals)
    waiting = asyncio.ensure_future(arrivals.everywhere(0))
    for subscriber in (first, second):
        subscriber.data_received(_stream(b": streaming t\n\n", _record(0, 0)))
        await asyncio.sleep(0)  # one loop pass: a waiter woken by this subscriber has finished
        assert waiting.done() == (subscriber is second)
    await waiting


async def test_a_subscriber_that_ends_stops_being_waited_for() -> None:
    arrivals = Arrivals(2)
    cut_off, _ = await _subscriber(arrivals)
    keeping_up, _ = await _subscriber(arrivals)
    waiting = asyncio.ensure_future(arrivals.everywhere(0))
    keeping_up.data_received(_stream(b": streaming t\n\n", _record(0, 0)))
    cut_off.data_received(
        _stream(b": streaming t\n\n", b'event: overflow\ndata: {"reason": "slow"}\n\n') + b"0\r\n\r\n"
    )
    await asyncio.wait_for(waiting, 5)
    assert cut_off.overflowed
    assert cut_off.lost_early
    assert not keeping_up.lost_early
    assert arrivals.expected == 1


async def test_an_answer_that_is_not_a_stream_fails_the_subscriber() -> None:
    subscriber, transport = await _subscriber(Arrivals(1))
    subscriber.data_received(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
    with pytest.raises(SubscriberError, match="not a chunked 200 stream"):
        await subscriber.ready
    assert transport.closed

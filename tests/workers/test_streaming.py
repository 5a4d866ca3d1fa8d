"""Streaming handlers on the in-memory broker: parts, the end record, errors, deadlines."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from kafkarpc.clients import Message
from kafkarpc.protocol import DEAD_LETTER_REASON, PROBLEM_JSON, Reply, Request
from tests.fakekafka import FakeKafka
from tests.workers.conftest import REPLIES, REQUESTS, request, send, serving, settings
from workers import Cancellation, HandlerError, HandlerRegistry, Response
from workers.errors import RegistryError

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Tick(BaseModel):
    i: int


class InternalTick(Tick):
    secret: str


class Query(BaseModel):
    n: int


def decoded(records: list[Message]) -> list[Reply]:
    return [Reply.from_record(m.value(), m.headers()) for m in records]


def stream_deadline(req: Request, seconds: float) -> Request:
    return dataclasses.replace(req, stream_deadline_ms=int((time.time() + seconds) * 1000))


async def test_parts_go_out_in_order_then_an_end_record_all_in_the_reply_partition(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("ticks", status_code=201)
    async def ticks() -> AsyncIterator[Tick]:
        for i in range(5):
            yield Tick(i=i)

    async with serving(broker, registry) as h:
        req = dataclasses.replace(request("ticks", reply_partition=1), trace=[("traceparent", TRACEPARENT)])
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        records = h.stream(req.correlation_id)
        replies = decoded(records)
        assert {m.partition() for m in records} == {1}
        assert [r.sequence for r in replies] == [0, 1, 2, 3, 4, 5]
        assert [r.final for r in replies] == [False] * 5 + [True]
        assert [orjson.loads(r.body) for r in replies[:5]] == [{"i": i} for i in range(5)]
        assert [r.status for r in replies] == [201, 200, 200, 200, 200, 200]  # the handler's, first
        assert all(r.content_type == "application/json" for r in replies[:5])
        assert replies[5].body == b""
        assert all(r.trace == [("traceparent", TRACEPARENT)] for r in replies)
        assert h.metric("rpcworker_stream_parts_total", method="ticks") == 5
        assert h.metric("rpcworker_handled_total", method="ticks", outcome="ok") == 1


async def test_without_a_reply_partition_every_record_follows_the_first() -> None:
    class Scattering(FakeKafka):
        """A partitioner that puts each keyless-partition record elsewhere: only pinning helps."""

        turn = 0

        def append(self, topic: str, value: bytes | None, **kwargs: Any) -> Message:
            if topic == REPLIES and kwargs.get("partition", -1) < 0:
                self.turn += 1
                kwargs["partition"] = self.turn % self.counts[topic]
            return super().append(topic, value, **kwargs)

    broker = Scattering({REQUESTS: 1, REPLIES: 2, "requests.dlt": 1, "rpc-catalog": 1})
    registry = HandlerRegistry()

    @registry.handler("ticks")
    async def ticks() -> AsyncIterator[Tick]:
        for i in range(4):
            yield Tick(i=i)

    async with serving(broker, registry) as h:
        req = request("ticks", reply_partition=None)
        send(broker, req)
        await broker.wait_for(lambda: h.committed(0) == 1)
        records = h.stream(req.correlation_id)
        assert len(records) == 5
        assert len({m.partition() for m in records}) == 1
        assert [r.sequence for r in decoded(records)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("error", "status"), [(HandlerError(409, "taken"), 409), (RuntimeError("password=x"), 500)]
)
async def test_an_error_after_the_first_part_ends_the_stream_with_a_problem(
    broker: FakeKafka, error: Exception, status: int
) -> None:
    registry = HandlerRegistry()

    @registry.handler("breaks")
    async def breaks() -> AsyncIterator[Tick]:
        yield Tick(i=0)
        yield Tick(i=1)
        raise error

    async with serving(broker, registry) as h:
        req = request("breaks")
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        replies = decoded(h.stream(req.correlation_id))
        assert [(r.sequence, r.final, r.status) for r in replies] == [
            (0, False, 200),
            (1, False, 200),
            (2, True, status),
        ]
        assert replies[2].content_type == PROBLEM_JSON
        problem = orjson.loads(replies[2].body)
        assert problem["status"] == status
        assert "password" not in problem["detail"]


async def test_a_failure_before_the_first_part_is_an_ordinary_problem_reply(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("missing")
    async def missing(req: Request) -> AsyncIterator[Tick]:
        if not req.body:
            raise HandlerError(404, "nothing to stream")
        yield Tick(i=0)

    @registry.handler("typed")
    async def typed(query: Query) -> AsyncIterator[Tick]:
        yield Tick(i=query.n)

    async with serving(broker, registry) as h:
        first, invalid = request("missing"), request("typed", b'{"n": "many"}')
        send(broker, first, partition=0)
        send(broker, invalid, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        (reply,) = decoded(h.stream(first.correlation_id))
        assert (reply.status, reply.sequence, reply.final) == (404, None, True)
        assert orjson.loads(reply.body)["detail"] == "nothing to stream"
        (rejected,) = decoded(h.stream(invalid.correlation_id))
        assert (rejected.status, rejected.sequence) == (422, None)


async def test_parts_are_serialised_like_whole_replies_through_the_item_annotation(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("typed")
    async def typed() -> AsyncGenerator[Tick, None]:
        yield InternalTick(i=7, secret="internal")  # the annotation decides what goes out

    @registry.handler("mixed")
    async def mixed() -> AsyncIterator[Any]:
        yield Response(b"<p>", 202, "text/html", headers={"ETag": '"1"'})
        yield b"\x00"
        yield "text"
        yield {"a": 1}

    async with serving(broker, registry) as h:
        typed_req, mixed_req = request("typed"), request("mixed")
        send(broker, typed_req, partition=0)
        send(broker, mixed_req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        assert orjson.loads(decoded(h.stream(typed_req.correlation_id))[0].body) == {"i": 7}
        parts = decoded(h.stream(mixed_req.correlation_id))[:4]
        assert [(p.status, p.content_type, p.body) for p in parts] == [
            (202, "text/html", b"<p>"),
            (200, "application/octet-stream", b"\x00"),
            (200, "text/plain; charset=utf-8", b"text"),
            (200, "application/json", b'{"a":1}'),
        ]
        assert [p.response_headers for p in parts] == [{"etag": '"1"'}, {}, {}, {}]


def test_a_generator_is_described_as_streaming_with_its_item_schema() -> None:
    registry = HandlerRegistry()

    @registry.handler("ticks")
    def ticks() -> Iterator[Tick]:
        yield Tick(i=0)

    @registry.handler("whole")
    async def whole() -> Tick:
        return Tick(i=0)

    streamed, plain = registry.get("ticks"), registry.get("whole")
    assert streamed is not None
    assert plain is not None
    method = streamed.describe()
    assert (method.streaming, method.cancellable) == (True, True)
    assert method.output == Tick.model_json_schema(mode="serialization")
    assert not plain.streaming
    assert (plain.describe().streaming, plain.describe().cancellable) == (False, True)
    assert plain.describe().output == method.output


def test_a_generator_annotated_with_a_single_value_is_refused() -> None:
    registry = HandlerRegistry()
    with pytest.raises(RegistryError, match="AsyncIterator"):

        @registry.handler("ticks")
        async def ticks() -> Tick:  # type: ignore[misc]
            yield Tick(i=0)


async def test_a_sync_generator_runs_each_step_in_the_thread_pool(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("threads")
    def threads() -> Iterator[str]:
        for _ in range(3):
            yield threading.current_thread().name

    async with serving(broker, registry) as h:
        req = request("threads")
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        replies = decoded(h.stream(req.correlation_id))
        assert len(replies) == 4
        assert all(r.body.startswith(b"handler") for r in replies[:3])


async def test_the_first_part_is_bounded_by_the_deadline_and_gets_no_reply_past_it(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("late")
    async def late() -> AsyncIterator[Tick]:
        await asyncio.Event().wait()
        yield Tick(i=0)

    async with serving(broker, registry) as h:
        send(broker, stream_deadline(request("late", deadline_in=0.2), 30), partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert broker.records(REPLIES) == []
        assert h.metric("rpcworker_handled_total", method="late", outcome="expired") == 1


async def test_after_the_first_part_the_stream_deadline_bounds_it(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("slow")
    async def slow() -> AsyncIterator[Tick]:
        yield Tick(i=0)
        await asyncio.sleep(0.5)  # the work between parts, past rpc-deadline
        yield Tick(i=1)

    async with serving(broker, registry) as h:
        req = stream_deadline(request("slow", deadline_in=0.2), 30)
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        replies = decoded(h.stream(req.correlation_id))
        assert [(r.sequence, r.status) for r in replies] == [(0, 200), (1, 200), (2, 200)]


async def test_a_stream_past_its_deadline_is_stopped_and_ended_with_504(broker: FakeKafka) -> None:
    stopped = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("endless")
    async def endless() -> AsyncIterator[Tick]:
        try:
            yield Tick(i=0)
            await asyncio.Event().wait()
            yield Tick(i=1)
        finally:
            stopped.set()

    async with serving(broker, registry) as h:
        req = stream_deadline(request("endless"), 0.3)
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert stopped.is_set()
        replies = decoded(h.stream(req.correlation_id))
        assert [(r.sequence, r.final, r.status) for r in replies] == [(0, False, 200), (1, True, 504)]
        assert orjson.loads(replies[1].body)["detail"] == "the stream reached its deadline"


async def test_a_sync_generator_left_at_its_deadline_is_closed_in_the_pool_once_its_step_ends(
    broker: FakeKafka,
) -> None:
    release, closed = threading.Event(), threading.Event()
    flags: list[bool] = []
    registry = HandlerRegistry()

    @registry.handler("blocking")
    def blocking(cancellation: Cancellation) -> Iterator[str]:
        try:
            yield "first"
            release.wait(10)  # blocked in a step when the deadline comes
            flags.append(cancellation.cancelled)
            yield "dropped"
            yield "never asked for"
        finally:
            closed.set()

    async with serving(broker, registry) as h:
        req = stream_deadline(request("blocking"), 0.3)
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)  # the dispatcher did not wait for the step
        assert [r.status for r in decoded(h.stream(req.correlation_id))] == [200, 504]
        assert not closed.is_set()
        release.set()
        assert await asyncio.to_thread(closed.wait, 5)
        assert flags == [True]
        assert len(h.stream(req.correlation_id)) == 2


async def test_parts_kafka_refuses_stop_the_handler_and_dead_letter_the_request(broker: FakeKafka) -> None:
    stopped = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("endless")
    async def endless() -> AsyncIterator[int]:
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            stopped.set()

    async with serving(broker, registry, settings(reply_topics="replies,gone")) as h:
        send(broker, request("endless", reply_to="gone"), partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert stopped.is_set()
        (letter,) = h.dead_letters()
        assert dict(letter.headers() or [])[DEAD_LETTER_REASON] == b"reply-undeliverable"
        assert h.metric("rpcworker_handled_total", method="endless", outcome="server_error") == 1

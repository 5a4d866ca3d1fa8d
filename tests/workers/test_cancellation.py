"""Cancel records on the in-memory broker: running and queued requests stop, offsets move on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from kafkarpc.protocol import (
    CANCEL,
    CORRELATION_ID,
    DEAD_LETTER_DETAIL,
    DEAD_LETTER_REASON,
    REPLY_TO,
    Reply,
    Request,
)
from tests.fakekafka import FakeKafka
from tests.workers.conftest import REPLIES, REQUESTS, cancel, request, send, serving, settings
from workers import Cancellation, HandlerRegistry


async def test_a_running_async_handler_is_cancelled_and_not_answered(broker: FakeKafka) -> None:
    started, seen = asyncio.Event(), asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("work")
    async def work(req: Request) -> str:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.set()
            raise
        return "never"

    async with serving(broker, registry) as h:
        req = request("work", deadline_in=60)
        send(broker, req, partition=0)
        await asyncio.wait_for(started.wait(), 5)
        cancel(broker, req, partition=0)
        await asyncio.wait_for(seen.wait(), 5)
        await broker.wait_for(lambda: h.committed(0) == 2)  # the request and the cancel record
        assert broker.records(REPLIES) == []
        assert h.dead_letters() == []
        assert h.metric("rpcworker_cancels_total", method="work", stage="running") == 1
        assert h.metric("rpcworker_handled_total", method="work", outcome="cancelled") == 1
        assert h.metric("rpcworker_expired_total") == 0


async def test_a_queued_request_that_is_cancelled_never_runs(broker: FakeKafka) -> None:
    release, holding = asyncio.Event(), asyncio.Event()
    ran: list[str] = []
    registry = HandlerRegistry()

    @registry.handler("hold")
    async def hold(req: Request) -> str:
        holding.set()
        await release.wait()
        return "held"

    @registry.handler("work")
    async def work(req: Request) -> str:
        ran.append(req.correlation_id)
        return "worked"

    async with serving(broker, registry, settings(concurrency=1)) as h:
        blocker, queued, after = request("hold"), request("work"), request("work")
        send(broker, blocker, partition=0)
        await asyncio.wait_for(holding.wait(), 5)
        send(broker, queued, partition=0)
        cancel(broker, queued, partition=0)
        send(broker, after, partition=0)
        await broker.wait_for(lambda: h.metric("rpcworker_cancels_total", method="work", stage="queued") == 1)
        release.set()
        await broker.wait_for(lambda: h.committed(0) == 4)
        assert ran == [after.correlation_id]
        assert set(h.replies()) == {blocker.correlation_id, after.correlation_id}
        assert h.dead_letters() == []


async def test_a_thread_handler_sees_the_flag_and_is_not_waited_for(broker: FakeKafka) -> None:
    started, release = threading.Event(), threading.Event()
    flags: list[bool] = []
    registry = HandlerRegistry()

    @registry.handler("export")
    def export(cancellation: Cancellation) -> str:
        started.set()
        flags.append(cancellation.wait(10))
        release.wait(10)  # ignores the flag: the worker must not wait for it
        return "late"

    async with serving(broker, registry) as h:
        req = request("export", deadline_in=60)
        send(broker, req, partition=0)
        assert await asyncio.to_thread(started.wait, 5)
        cancel(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        assert not release.is_set()
        release.set()
    assert flags == [True]
    assert broker.records(REPLIES) == []


async def test_the_deadline_sets_a_thread_handlers_flag_too(broker: FakeKafka) -> None:
    done = threading.Event()
    flags: list[bool] = []
    registry = HandlerRegistry()

    @registry.handler("export")
    def export(cancellation: Cancellation) -> str:
        flags.append(cancellation.wait(10))
        done.set()
        return "late"

    async with serving(broker, registry) as h:
        send(broker, request("export", deadline_in=0.2), partition=0)
        assert await asyncio.to_thread(done.wait, 5)
        await broker.wait_for(lambda: h.committed(0) == 1)
    assert flags == [True]
    assert broker.records(REPLIES) == []


async def test_a_cancelled_stream_stops_without_an_end_record(broker: FakeKafka) -> None:
    first, stopped = asyncio.Event(), asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("ticks")
    async def ticks() -> AsyncIterator[int]:
        try:
            yield 0
            first.set()
            await asyncio.Event().wait()
            yield 1
        finally:
            stopped.set()

    async with serving(broker, registry) as h:
        req = request("ticks", deadline_in=60)
        send(broker, req, partition=0)
        await asyncio.wait_for(first.wait(), 5)
        cancel(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        assert stopped.is_set()
        (part,) = [Reply.from_record(m.value(), m.headers()) for m in h.stream(req.correlation_id)]
        assert (part.sequence, part.final) == (0, False)
        assert h.metric("rpcworker_cancels_total", method="ticks", stage="running") == 1


async def test_a_cancel_for_no_request_here_is_counted_and_committed(broker: FakeKafka) -> None:
    async with serving(broker, HandlerRegistry()) as h:
        cancel(broker, request("gone"), partition=1)
        await broker.wait_for(lambda: h.committed(1) == 1)
        assert h.metric("rpcworker_cancels_total", method="_unknown", stage="unknown") == 1
        assert h.dead_letters() == []


async def test_a_malformed_cancel_record_is_dead_lettered_without_a_reply(broker: FakeKafka) -> None:
    async with serving(broker, HandlerRegistry()) as h:
        # Readable enough to answer 400 if it were a request; a cancel's answer nobody waits for.
        req = request("gone")
        headers = [(CORRELATION_ID, req.correlation_id.encode()), (REPLY_TO, b"replies"), (CANCEL, b"\xff")]
        broker.append(REQUESTS, b"", headers=headers, partition=2)
        await broker.wait_for(lambda: h.committed(2) == 1)
        (letter,) = h.dead_letters()
        found = dict(letter.headers() or [])
        assert found[DEAD_LETTER_REASON] == b"invalid-request"
        assert (found[DEAD_LETTER_DETAIL] or b"").startswith(b"cancel record: ")
        assert broker.records(REPLIES) == []

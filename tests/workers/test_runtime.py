"""The Worker end to end on the in-memory broker: replies, commits, poison, drain, backpressure."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import orjson
import pytest

from kafkarpc import stamps
from kafkarpc.protocol import (
    CORRELATION_ID,
    DEAD_LETTER_DETAIL,
    DEAD_LETTER_REASON,
    DEAD_LETTER_SOURCE,
    TIMING,
    Request,
)
from tests.fakekafka import FakeKafka
from tests.workers.conftest import DLT, REPLIES, REQUESTS, request, send, serving, settings
from workers.errors import HandlerError
from workers.registry import HandlerRegistry
from workers.response import Response


def holding(release: asyncio.Event) -> HandlerRegistry:
    """A registry whose ``hold`` handler answers once ``release`` is set."""
    registry = HandlerRegistry()

    @registry.handler("hold")
    async def hold(req: Request) -> str:
        await release.wait()
        return "done"

    return registry


def echo_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("echo")
    async def echo(req: Request) -> Response:
        return Response(req.body, 200, req.content_type)

    @registry.handler("sync.upper")
    def upper(req: Request) -> bytes:
        return req.body.upper()

    return registry


async def test_replies_go_to_the_reply_topic_and_partition_with_the_correlation_id(
    broker: FakeKafka,
) -> None:
    async with serving(broker, echo_registry()) as h:
        reqs = [request("echo", f"body {i}".encode(), reply_partition=i % 2) for i in range(20)]
        for req in reqs:
            send(broker, req)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 20)
        replies = h.replies()
        for req in reqs:
            assert replies[req.correlation_id].body == req.body
            assert replies[req.correlation_id].status == 200
        for message in broker.records(REPLIES):
            reply = h.replies()[(message.key() or b"").decode()]  # key = correlation id
            partition = next(r.reply_partition for r in reqs if r.correlation_id == reply.correlation_id)
            assert message.partition() == partition


async def test_sync_handlers_run_in_the_thread_pool(broker: FakeKafka) -> None:
    seen: list[str] = []
    registry = HandlerRegistry()

    @registry.handler("where")
    def where(req: Request) -> str:
        seen.append(threading.current_thread().name)
        return "ok"

    async with serving(broker, registry) as h:
        req = request("where")
        send(broker, req)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
        assert h.replies()[req.correlation_id].body == b"ok"
        assert seen[0].startswith("handler")


async def test_offsets_are_committed_after_the_replies(broker: FakeKafka) -> None:
    async with serving(broker, echo_registry()) as h:
        for i in range(9):
            send(broker, request("echo", b"x"), partition=i % 3)
        await broker.wait_for(lambda: all(h.committed(p) == 3 for p in range(3)))
    assert len(broker.records(REPLIES)) == 9


async def test_a_slow_record_holds_back_the_commit_but_not_later_records(broker: FakeKafka) -> None:
    release = asyncio.Event()
    registry = echo_registry()

    @registry.handler("block")
    async def block(req: Request) -> str:
        await release.wait()
        return "released"

    async with serving(broker, registry) as h:
        slow = request("block")
        send(broker, slow, partition=0)
        fast = [request("echo") for _ in range(5)]
        for req in fast:
            send(broker, req, partition=0)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 5)
        # Later records were answered, but nothing past the unfinished offset 0 is committed.
        assert h.committed(0) is None
        release.set()
        await broker.wait_for(lambda: h.committed(0) == 6)
        assert h.replies()[slow.correlation_id].body == b"released"


async def test_handler_errors_become_problem_replies(broker: FakeKafka) -> None:
    registry = HandlerRegistry()

    @registry.handler("teapot")
    async def teapot(req: Request) -> None:
        raise HandlerError(418, "short and stout")

    @registry.handler("crash")
    def crash(req: Request) -> None:
        raise RuntimeError("password=hunter2")

    async with serving(broker, registry) as h:
        a, b = request("teapot"), request("crash")
        send(broker, a)
        send(broker, b)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 2)
        replies = h.replies()
        assert replies[a.correlation_id].status == 418
        assert replies[a.correlation_id].content_type == "application/problem+json"
        assert orjson.loads(replies[a.correlation_id].body)["detail"] == "short and stout"
        crashed = orjson.loads(replies[b.correlation_id].body)
        assert replies[b.correlation_id].status == 500
        assert "RuntimeError" in crashed["detail"]
        assert "hunter2" not in crashed["detail"]  # internals stay in the log
        assert h.worker.metrics.handled.labels("crash", "server_error")._value.get() == 1


async def test_poison_records_are_dead_lettered_without_blocking_the_partition(broker: FakeKafka) -> None:
    async with serving(broker, echo_registry()) as h:
        good_before, good_after = request("echo", b"1"), request("echo", b"2")
        unknown = request("nope")
        send(broker, good_before, partition=0)
        broker.append(REQUESTS, b"garbage", headers=[("rpc-method", b"echo")], partition=0)
        send(broker, unknown, partition=0)
        send(broker, good_after, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 4)
        replies = h.replies()
        assert replies[good_before.correlation_id].status == 200
        assert replies[good_after.correlation_id].status == 200
        assert replies[unknown.correlation_id].status == 404
        letters = h.dead_letters()
        reasons = [dict(m.headers() or [])[DEAD_LETTER_REASON] for m in letters]
        assert reasons == [b"invalid-request", b"unknown-method"]
        assert letters[0].value() == b"garbage"
        assert dict(letters[0].headers() or [])[DEAD_LETTER_SOURCE] == f"{REQUESTS}/0/1".encode()
        assert b"rpc-correlation-id" in (dict(letters[0].headers() or [])[DEAD_LETTER_DETAIL] or b"")
        assert h.worker.metrics.dead_lettered.labels("unknown-method")._value.get() == 1


async def test_a_forbidden_reply_topic_is_dead_lettered_and_not_answered(broker: FakeKafka) -> None:
    broker.create_topic("victim", 1)
    async with serving(broker, echo_registry()) as h:
        send(broker, request("echo", b"steer", reply_to="victim"), partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert broker.records("victim") == []
        assert dict(h.dead_letters()[0].headers() or [])[DEAD_LETTER_REASON] == b"reply-topic-not-allowed"


async def test_duplicated_reserved_headers_get_no_reply(broker: FakeKafka) -> None:
    async with serving(broker, echo_registry()) as h:
        req = request("echo")
        headers = [*req.headers(), ("rpc-correlation-id", b"f" * 32)]
        broker.append(REQUESTS, b"x", headers=headers, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert broker.records(REPLIES) == []
        assert dict(h.dead_letters()[0].headers() or [])[DEAD_LETTER_REASON] == b"duplicate-header"


async def test_expired_requests_are_skipped_without_reply(broker: FakeKafka) -> None:
    calls: list[str] = []
    registry = HandlerRegistry()

    @registry.handler("count")
    async def count(req: Request) -> str:
        calls.append(req.correlation_id)
        return "counted"

    async with serving(broker, registry) as h:
        expired, fresh = request("count", deadline_in=-1), request("count")
        send(broker, expired, partition=0)
        send(broker, fresh, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        assert calls == [fresh.correlation_id]
        assert set(h.replies()) == {fresh.correlation_id}
        assert h.worker.metrics.expired._value.get() == 1


async def test_a_handler_running_past_the_deadline_is_cancelled_and_not_answered(broker: FakeKafka) -> None:
    cancelled = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("forever")
    async def forever(req: Request) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async with serving(broker, registry) as h:
        send(broker, request("forever", deadline_in=0.2), partition=0)
        await asyncio.wait_for(cancelled.wait(), 5)
        await broker.wait_for(lambda: h.committed(0) == 1)
        assert broker.records(REPLIES) == []
        assert h.worker.metrics.handled.labels("forever", "expired")._value.get() == 1


async def test_an_undeliverable_reply_dead_letters_the_request(broker: FakeKafka) -> None:
    async with serving(broker, echo_registry(), settings(reply_topics="replies,gone")) as h:
        send(broker, request("echo", b"lost", reply_to="gone"), partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
        letter = h.dead_letters()[0]
        assert dict(letter.headers() or [])[DEAD_LETTER_REASON] == b"reply-undeliverable"
        assert letter.value() == b"lost"


async def test_a_dead_letter_kafka_refuses_stops_the_worker_without_committing(broker: FakeKafka) -> None:
    broker.refused.add(DLT)
    async with serving(broker, echo_registry()) as h:
        send(broker, request("nope"), partition=0)
        await asyncio.wait_for(h.worker._stop.wait(), 5)
    assert h.worker.exit_code == 1
    assert h.committed(0) is None


async def test_concurrency_is_bounded_and_fetching_pauses_when_the_buffer_is_full(broker: FakeKafka) -> None:
    release = asyncio.Event()
    running = 0
    peak = 0
    registry = HandlerRegistry()

    @registry.handler("hold")
    async def hold(req: Request) -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return "done"

    async with serving(broker, registry, settings(concurrency=4, max_buffered=8)) as h:
        for i in range(30):
            send(broker, request("hold"), partition=i % 3)
        await broker.wait_for(lambda: h.consumer.pause_calls >= 1)
        assert h.metric("rpcworker_in_flight") == 4
        paused_at = dict(h.consumer.positions)
        release.set()
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 30)
        assert peak == 4
        await broker.wait_for(lambda: sum(h.committed(p) or 0 for p in range(3)) == 30)
    # Each resume seeks the fetched partitions to where fetching stopped, which wakes
    # librdkafka's idle fetcher at once (else it notices up to a second later); the first
    # resume's seeks go exactly to the positions held while paused.
    first = {(topic, partition): offset for topic, partition, offset in h.consumer.seeks[: len(paused_at)]}
    assert first == paused_at


async def test_a_slot_is_freed_when_its_handler_is_done_not_when_its_reply_is_acknowledged(
    broker: FakeKafka,
) -> None:
    """Replies awaiting Kafka's acknowledgement hold no slot, but still count as buffered."""
    async with serving(broker, echo_registry(), settings(concurrency=1, max_buffered=4)) as h:
        broker.hung = True  # nothing produced is sent or acknowledged until it recovers
        for _ in range(10):
            send(broker, request("echo"), partition=0)

        def unacknowledged() -> int:
            return sum(len(producer.queued) for producer in broker.producers)

        # One slot, yet every handler has run: none waited for an acknowledgement.
        await broker.wait_for(lambda: unacknowledged() == 10)
        assert h.metric("rpcworker_in_flight") == 0
        # The ten awaiting acknowledgement are held: fetching pauses, and stays paused.
        await broker.wait_for(lambda: bool(h.consumer.paused))
        assert h.committed(0) is None
        broker.hung = False
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 10)
        await broker.wait_for(lambda: h.committed(0) == 10)
        await broker.wait_for(lambda: not h.consumer.paused)


async def test_a_request_waiting_for_a_slot_says_so_in_its_timing(broker: FakeKafka) -> None:
    """``worker_fetched`` is the fetch, ``worker_in`` the handler's start: the wait lies between."""
    release = asyncio.Event()
    registry = holding(release)

    async with serving(broker, registry, settings(concurrency=1)) as h:
        first, second = (
            dataclasses.replace(request("hold"), timing="http_in=1,produced=2") for _ in range(2)
        )
        send(broker, first, partition=0)
        send(broker, second, partition=0)
        await broker.wait_for(lambda: h.metric("rpcworker_records_consumed_total") == 2)
        released_at = int(time.time() * 1_000_000)
        release.set()
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 2)
    timings = {}
    for record in broker.records(REPLIES):
        headers = {name: value or b"" for name, value in record.headers() or []}
        timings[headers[CORRELATION_ID].decode()] = stamps.stamps(headers[TIMING].decode())
    waited = timings[second.correlation_id]
    assert list(waited) == ["http_in", "produced", "worker_fetched", "worker_in", "worker_out"]
    # Fetched while the one slot was taken, started only after the first handler let go of it.
    assert waited["worker_fetched"] <= released_at <= timings[first.correlation_id]["worker_out"]
    assert timings[first.correlation_id]["worker_out"] <= waited["worker_in"]


async def test_partitions_assigned_while_fetching_is_paused_are_not_fetched(broker: FakeKafka) -> None:
    """A cooperative rebalance during back-pressure must not let the new partitions' records in."""
    release = asyncio.Event()
    registry = holding(release)

    async with serving(broker, registry, settings(concurrency=1, max_buffered=2)) as h:
        for _ in range(2):
            send(broker, request("hold"), partition=0)
        await broker.wait_for(lambda: h.consumer.pause_calls >= 1)  # the buffer is full: paused
        h.consumer.revoke([(REQUESTS, 1)])
        await broker.wait_for(lambda: (REQUESTS, 1) not in h.consumer.positions)
        for _ in range(5):
            send(broker, request("hold"), partition=1)
        h.consumer.assign_again([(REQUESTS, 1)])  # arrives while still paused
        await broker.wait_for(lambda: (REQUESTS, 1) in h.consumer.positions)
        fetches = broker.calls["consume"]
        await broker.wait_for(lambda: broker.calls["consume"] >= fetches + 2)  # fetched since, twice
        assert h.consumer.positions[(REQUESTS, 1)] == 0
        assert h.worker.metrics.records_consumed._value.get() == 2
        release.set()
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 7)


async def test_revocation_drains_in_flight_work_and_commits_it(broker: FakeKafka) -> None:
    release, two_running = asyncio.Event(), asyncio.Event()
    started: list[str] = []
    registry = HandlerRegistry()

    @registry.handler("hold")
    async def hold(req: Request) -> str:
        started.append(req.correlation_id)
        if len(started) == 2:
            two_running.set()
        await release.wait()
        return "done"

    async with serving(broker, registry, settings(concurrency=2)) as h:
        reqs = [request("hold") for _ in range(5)]
        for req in reqs:
            send(broker, req, partition=1)
        await asyncio.wait_for(two_running.wait(), 5)
        h.consumer.revoke([(REQUESTS, 1)])
        # The two running handlers finish; the three queued records are left for the next owner.
        assert await asyncio.to_thread(h.consumer.revoking.wait, 5)
        release.set()
        await broker.wait_for(lambda: h.committed(1) == 2)
        assert len(broker.records(REPLIES)) == 2
        # Re-assigned, the partition resumes exactly after the committed work.
        h.consumer.assign_again([(REQUESTS, 1)])
        await broker.wait_for(lambda: h.committed(1) == 5)
        assert set(h.replies()) == {r.correlation_id for r in reqs}
        assert len(broker.records(REPLIES)) == 5


async def test_shutdown_drains_in_flight_work_and_commits_it(broker: FakeKafka) -> None:
    started = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("slow")
    async def slow(req: Request) -> str:
        started.set()
        await asyncio.sleep(0.2)  # the work being drained, not synchronisation
        return "finished"

    async with serving(broker, registry) as h:
        send(broker, request("slow"), partition=2)
        await asyncio.wait_for(started.wait(), 5)
    assert h.committed(2) == 1
    assert len(broker.records(REPLIES)) == 1
    assert h.consumer.closed


async def test_drain_timeout_abandons_work_without_committing_it(broker: FakeKafka) -> None:
    started = asyncio.Event()
    registry = HandlerRegistry()

    @registry.handler("stuck")
    async def stuck(req: Request) -> None:
        started.set()
        await asyncio.Event().wait()

    async with serving(broker, registry, settings(drain_timeout=0.1)) as h:
        send(broker, request("stuck", deadline_in=60), partition=0)
        await asyncio.wait_for(started.wait(), 5)
    assert h.committed(0) is None
    assert broker.records(REPLIES) == []


async def test_transient_errors_are_retried(broker: FakeKafka) -> None:
    from workers.errors import TransientError

    attempts: list[int] = []
    registry = HandlerRegistry()

    @registry.handler("flaky")
    async def flaky(req: Request) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise TransientError("database busy")
        return "third time lucky"

    async with serving(broker, registry, settings(retry_attempts=3, retry_backoff=0.001)) as h:
        req = request("flaky")
        send(broker, req)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
        assert h.replies()[req.correlation_id].body == b"third time lucky"
        assert h.worker.metrics.retries.labels("flaky")._value.get() == 2


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
async def test_monitoring_endpoints(broker: FakeKafka, path: str) -> None:
    async with serving(broker, echo_registry()) as h:
        send(broker, request("echo"))
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
        reader, writer = await asyncio.open_connection("127.0.0.1", h.worker.monitoring_port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        response = await reader.read()
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK")
    if path == "/metrics":
        assert b'rpcworker_handled_total{method="echo",outcome="ok"} 1.0' in response
        assert b"rpcworker_records_consumed_total 1.0" in response

"""The edges of the wire contract (docs/PROTOCOL.md) as the worker settles them, one test each."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from kafkarpc.protocol import (
    DEAD_LETTER_REASON,
    REPLY_PARTITION,
    REPLY_TO,
    Request,
)
from tests.fakekafka import FakeKafka, record
from tests.workers.conftest import REPLIES, request, send, serving, settings
from workers.deadletter import Reason
from workers.dispatcher import Dispatcher
from workers.metrics import WorkerMetrics
from workers.registry import HandlerRegistry

NOW = 1_800_000_000.0


def echo_registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("echo")
    async def echo(req: Request) -> bytes:
        # Returns without suspending, so a deadline a millisecond away cannot fire meanwhile.
        return req.body

    return registry


def dispatcher_at(now: float) -> Dispatcher:
    return Dispatcher(echo_registry(), settings(), WorkerMetrics(), ThreadPoolExecutor(1), clock=lambda: now)


async def test_reserved_header_names_are_matched_case_insensitively() -> None:
    req = request("echo", b"hi")
    shouted = [(name.upper(), value) for name, value in req.headers()]
    outcome = await dispatcher_at(time.time()).dispatch(record("requests", 0, 1, b"hi", headers=shouted))
    assert outcome.reply is not None
    assert outcome.reply.correlation_id == req.correlation_id
    assert (outcome.reply.status, outcome.reply.body) == (200, b"hi")


async def test_two_names_that_differ_only_in_case_are_duplicates() -> None:
    headers = [*request("echo").headers(), ("RPC-Reply-To", b"attacker")]
    outcome = await dispatcher_at(time.time()).dispatch(record("requests", 0, 1, b"x", headers=headers))
    assert outcome.reply is None
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason is Reason.DUPLICATE_HEADER


async def test_a_request_whose_deadline_is_now_is_expired_and_one_a_millisecond_later_is_not() -> None:
    def at(deadline_ms: int) -> Request:
        return Request("a" * 32, REPLIES, 0, "echo", deadline_ms, b"x")

    boundary = int(NOW * 1000)
    expired = await dispatcher_at(NOW).dispatch(
        record("requests", 0, 1, b"x", headers=at(boundary).headers())
    )
    served = await dispatcher_at(NOW).dispatch(
        record("requests", 0, 2, b"x", headers=at(boundary + 1).headers())
    )
    assert expired.reply is None
    assert expired.dead_letter is None
    assert served.reply is not None


async def test_a_reply_partition_that_is_not_a_number_is_dead_lettered_without_a_reply() -> None:
    headers = [(n, b"zero" if n == REPLY_PARTITION else v) for n, v in request("echo").headers()]
    outcome = await dispatcher_at(time.time()).dispatch(record("requests", 0, 1, b"x", headers=headers))
    assert outcome.reply is None  # where to answer is ambiguous
    assert outcome.dead_letter is not None
    assert outcome.dead_letter.reason is Reason.INVALID_REQUEST


async def test_a_reply_partition_that_does_not_exist_dead_letters_the_request(broker: FakeKafka) -> None:
    async with serving(broker, echo_registry()) as h:
        send(broker, request("echo", b"nowhere", reply_partition=9), partition=0)
        await broker.wait_for(lambda: h.committed(0) == 1)
    (letter,) = h.dead_letters()
    assert dict(letter.headers() or [])[DEAD_LETTER_REASON] == b"reply-undeliverable"
    assert broker.records(REPLIES) == []


async def test_the_reply_key_is_the_correlation_id(broker: FakeKafka) -> None:
    req = request("echo", b"k")
    async with serving(broker, echo_registry()) as h:
        send(broker, req, partition=0)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
    (reply,) = broker.records(REPLIES)
    assert reply.key() == req.correlation_id.encode()
    assert REPLY_TO not in dict(reply.headers() or [])
    assert h.worker.exit_code == 0

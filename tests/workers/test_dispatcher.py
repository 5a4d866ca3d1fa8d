"""Dispatch decisions without Kafka: replies, problems, retries, poison classification."""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest

from kafkarpc import protocol, stamps
from kafkarpc.clients import Message
from kafkarpc.protocol import CORRELATION_ID, REPLY_TO, Request
from tests.fakekafka import record
from tests.workers.conftest import request, settings
from workers.call import Call
from workers.dispatcher import Dispatcher
from workers.errors import TransientError
from workers.metrics import WorkerMetrics
from workers.registry import HandlerRegistry


def message(req: Request) -> Message:
    return record("requests", 0, 7, req.body, headers=req.headers())


def dispatcher(registry: HandlerRegistry, **overrides: object) -> Dispatcher:
    return Dispatcher(registry, settings(**overrides), WorkerMetrics(), ThreadPoolExecutor(2))


@pytest.mark.parametrize(
    ("result", "status", "body", "content_type"),
    [
        (None, 204, b"", "application/octet-stream"),
        ("hi", 200, b"hi", "text/plain; charset=utf-8"),
        ({"a": [1]}, 200, b'{"a":[1]}', "application/json"),
        (b"\x00", 200, b"\x00", "application/octet-stream"),
    ],
)
async def test_return_values_become_replies(
    result: object, status: int, body: bytes, content_type: str
) -> None:
    registry = HandlerRegistry()
    registry.add("m", lambda req: result)
    req = request("m")
    outcome = await dispatcher(registry).dispatch(message(req))
    assert outcome.reply is not None
    assert (outcome.reply.status, outcome.reply.body, outcome.reply.content_type) == (
        status,
        body,
        content_type,
    )
    assert (outcome.reply_to, outcome.reply_partition) == (req.reply_to, req.reply_partition)


async def test_a_malformed_request_with_an_unambiguous_address_gets_400_and_a_dead_letter() -> None:
    cid = "a" * 32
    headers = [(CORRELATION_ID, cid.encode()), (REPLY_TO, b"replies")]
    bad = record("requests", 0, 1, b"x", headers=headers)
    outcome = await dispatcher(HandlerRegistry()).dispatch(bad)
    assert outcome.reply is not None
    assert outcome.reply.status == 400
    assert outcome.reply.correlation_id == cid
    assert b"rpc-method" in outcome.reply.body
    assert outcome.dead_letter is not None


async def test_a_malformed_request_naming_a_foreign_reply_topic_gets_no_reply() -> None:
    headers = [(CORRELATION_ID, b"a" * 32), (REPLY_TO, b"elsewhere")]
    bad = record("requests", 0, 1, b"x", headers=headers)
    outcome = await dispatcher(HandlerRegistry()).dispatch(bad)
    assert outcome.reply is None
    assert outcome.dead_letter is not None


async def test_transient_errors_stop_after_the_attempts_with_503() -> None:
    calls: list[int] = []
    registry = HandlerRegistry()

    @registry.handler("down")
    async def down(req: Request) -> None:
        calls.append(1)
        raise TransientError("dependency down")

    outcome = await dispatcher(registry, retry_attempts=3, retry_backoff=0.001).dispatch(
        message(request("down"))
    )
    assert len(calls) == 3
    assert outcome.reply is not None
    assert outcome.reply.status == 503
    assert "dependency down" in orjson.loads(outcome.reply.body)["detail"]


async def test_retries_never_start_past_the_deadline() -> None:
    calls: list[float] = []
    registry = HandlerRegistry()

    @registry.handler("down")
    async def down(req: Request) -> None:
        calls.append(time.monotonic())
        raise TransientError("still down")

    # The backoff (>= 5 s) is longer than the 1 s left, so the first failure is final.
    slow = dispatcher(registry, retry_attempts=10, retry_backoff=5, retry_backoff_max=5)
    outcome = await slow.dispatch(message(request("down", deadline_in=1)))
    assert len(calls) == 1
    assert outcome.reply is not None
    assert outcome.reply.status == 503


async def test_an_expired_unknown_method_is_dead_lettered_without_reply() -> None:
    outcome = await dispatcher(HandlerRegistry()).dispatch(message(request("ghost", deadline_in=-1)))
    assert outcome.reply is None
    assert outcome.dead_letter is not None


async def test_a_transient_failure_is_retried_once_and_then_answers() -> None:
    calls: list[int] = []
    registry = HandlerRegistry()

    @registry.handler("flaky")
    async def flaky(req: Request) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise TransientError("blip")
        return "fine"

    metrics = WorkerMetrics()
    flaky_dispatcher = Dispatcher(
        registry, settings(retry_attempts=3, retry_backoff=0.001), metrics, ThreadPoolExecutor(1)
    )
    outcome = await flaky_dispatcher.dispatch(message(request("flaky")))
    assert len(calls) == 2
    assert outcome.reply is not None
    assert (outcome.reply.status, outcome.reply.body) == (200, b"fine")
    assert metrics.registry.get_sample_value("rpcworker_retries_total", {"method": "flaky"}) == 1.0


async def test_one_attempt_means_no_retry() -> None:
    calls: list[int] = []
    registry = HandlerRegistry()

    @registry.handler("down")
    async def down(req: Request) -> None:
        calls.append(1)
        raise TransientError("down")

    outcome = await dispatcher(registry, retry_attempts=1).dispatch(message(request("down")))
    assert len(calls) == 1
    assert outcome.reply is not None
    assert outcome.reply.status == 503


async def test_a_timed_request_gets_the_workers_stamps_appended_in_order() -> None:
    registry = HandlerRegistry()
    registry.add("m", lambda req: "ok")
    timed = dataclasses.replace(request("m"), timing="http_in=1,produced=2")
    before = int(time.time() * 1_000_000)
    outcome = await dispatcher(registry).dispatch(message(timed))
    assert outcome.reply is not None
    found = stamps.stamps(outcome.reply.timing)
    assert list(found) == ["http_in", "produced", "worker_in", "worker_out"]
    assert before <= found["worker_in"] <= found["worker_out"] <= int(time.time() * 1_000_000)


async def test_a_timed_request_says_when_the_runtime_fetched_it() -> None:
    registry = HandlerRegistry()
    registry.add("m", lambda req: "ok")
    timed = dataclasses.replace(request("m"), timing="http_in=1,produced=2")
    fetched_at = time.time()
    outcome = await dispatcher(registry).dispatch(message(timed), Call(fetched_at=fetched_at))
    assert outcome.reply is not None
    found = stamps.stamps(outcome.reply.timing)
    assert list(found) == ["http_in", "produced", "worker_fetched", "worker_in", "worker_out"]
    assert found["worker_fetched"] == int(fetched_at * 1_000_000)
    assert found["worker_fetched"] <= found["worker_in"] <= found["worker_out"]


async def test_an_untimed_request_gets_an_untimed_reply() -> None:
    registry = HandlerRegistry()
    registry.add("m", lambda req: "ok")
    outcome = await dispatcher(registry).dispatch(message(request("m")))
    assert outcome.reply is not None
    assert outcome.reply.timing == ""
    assert protocol.TIMING not in dict(outcome.reply.headers())

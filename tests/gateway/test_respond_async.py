"""``Prefer: respond-async`` over the in-memory cluster: 202, the location, the long deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from confluent_kafka import KafkaError

from kafkarpc import protocol
from tests.fakekafka import FakeKafka

from .conftest import Harness, gateway_settings, running
from .fakes import FakeWorker, echo

ASYNC = {"prefer": "respond-async"}


def silent(request: protocol.Request) -> None:
    """A worker that has not answered yet."""


@pytest.fixture
async def harness(cluster: FakeKafka) -> AsyncIterator[Harness]:
    settings = gateway_settings(default_timeout=2.0, max_timeout=5.0, async_timeout=900, result_key="r" * 32)
    async with running(settings, cluster) as h:
        yield h


async def test_respond_async_is_202_with_a_location_and_a_long_deadline(harness: Harness) -> None:
    before_ms = time.time() * 1000
    with FakeWorker(harness.cluster, {"slow": silent}):
        response = await harness.http.post("/rpc/slow", content=b"x", headers=ASYNC)
        assert response.status_code == 202
        assert response.headers["preference-applied"] == "respond-async"
        assert response.headers["retry-after"] == "1"
        location = response.headers["location"]
        assert orjson.loads(response.content) == {
            "status": "accepted",
            "location": location,
            "correlation_id": response.headers["x-correlation-id"],
        }
        handle = harness.gateway.locations.handle(location.removeprefix("/results/"))
        assert handle.correlation_id == response.headers["x-correlation-id"]
        assert handle.partition == harness.gateway.listener.partition
        assert handle.subject is None
        # Workers must not skip it as expired while the caller waits on the location.
        await harness.cluster.wait_for(lambda: len(harness.cluster.records("requests")) == 1)
        record = harness.cluster.records("requests")[0]
        request = protocol.Request.from_record(record.value(), record.headers())
        assert request.deadline_ms >= before_ms + 899_000
    assert harness.metric("rpcgw_async_accepted_total", method="slow") == 1
    assert len(harness.gateway.client._pending) == 0
    # Not a timeout: the caller asked for the handle.
    assert harness.metric("rpcgw_timeouts_total", method="slow") == 0


async def test_respond_async_with_wait_answers_in_time_like_a_call(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}):
        response = await harness.http.post(
            "/rpc/echo", content=b"hi", headers={"prefer": "respond-async, wait=3"}
        )
    assert response.status_code == 200
    assert response.content == b"hi"
    assert response.headers["preference-applied"] == "wait=3"


async def test_respond_async_with_wait_gives_the_handle_when_the_work_runs_long(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"slow": silent}):
        response = await harness.http.post(
            "/rpc/slow", content=b"x", headers={"prefer": "respond-async, wait=1"}
        )
    assert response.status_code == 202
    assert response.headers["preference-applied"] == "respond-async, wait=1"
    assert response.headers["location"].startswith("/results/")


async def test_a_202_is_only_given_once_kafka_has_the_request(harness: Harness) -> None:
    harness.cluster.delivery_error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    response = await harness.http.post("/rpc/slow", content=b"x", headers=ASYNC)
    assert response.status_code == 503
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    assert "location" not in response.headers


async def test_the_reply_to_a_202_is_expected_not_late(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"slow": lambda _: None}) as worker:
        response = await harness.http.post("/rpc/slow", content=b"x", headers=ASYNC)
        assert response.status_code == 202
        assert await asyncio.to_thread(worker.wait_requests, 1)
        held = worker.requests[0]  # recorded before its handler runs: no race with the handler thread
        worker.reply(held, protocol.Reply(held.correlation_id, 200, b"done"))
        async with asyncio.timeout(5):
            while harness.gateway.listener.offset < 1:  # noqa: ASYNC110 - loop state, nothing signals it
                await asyncio.sleep(0.01)
    # The router has read the reply (the listener's offset passed it) and did not call it late.
    assert harness.metric("rpcgw_late_replies_total") == 0
    assert harness.metric("rpcgw_unmatched_replies_total") == 0

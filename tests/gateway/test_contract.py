"""The edges of the wire contract (docs/PROTOCOL.md) as the gateway settles them, one test each."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from kafkarpc import protocol
from tests.fakekafka import FakeKafka

from .conftest import Harness, gateway_settings, running
from .fakes import FakeWorker, echo


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    body: dict[str, Any] = orjson.loads(response.content)
    return body


async def test_a_forwarded_header_that_is_not_utf8_is_400_and_not_produced(harness: Harness) -> None:
    response = await harness.http.post("/rpc/echo", content=b"x", headers={b"x-request-id": b"\xff\xfe"})
    assert "not UTF-8" in problem(response, 400)["detail"]
    assert harness.cluster.records("requests") == []


async def test_a_forwarded_header_in_utf8_travels(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}) as worker:
        response = await harness.http.post(
            "/rpc/echo", content=b"x", headers={b"x-request-id": "é-1".encode()}
        )
    assert response.status_code == 200
    assert ("x-request-id", "é-1".encode()) in worker.requests[0].extra


async def test_a_1xx_reply_is_502_because_it_is_not_a_final_response(harness: Harness) -> None:
    def early(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply(request.correlation_id, 103, b"", "text/plain")

    with FakeWorker(harness.cluster, {"early": early}):
        response = await harness.http.post("/rpc/early", content=b"x")
    body = problem(response, 502)
    assert body["worker_status"] == 103
    assert body["detail"] == "the worker replied with status 103, which is not a final response"


async def test_a_5xx_body_that_is_not_problem_json_is_not_forwarded(harness: Harness) -> None:
    def crashing(request: protocol.Request) -> protocol.Reply:
        trace = b"Traceback (most recent call last): password=hunter2"
        return protocol.Reply(request.correlation_id, 500, trace, "text/plain")

    with FakeWorker(harness.cluster, {"crashing": crashing}):
        response = await harness.http.post("/rpc/crashing", content=b"x")
    body = problem(response, 502)
    assert body["detail"] == "the worker failed with status 500"
    assert b"hunter2" not in response.content


@pytest.mark.parametrize("content_type", [None, b""])
async def test_a_reply_without_a_content_type_is_octet_stream(
    harness: Harness, content_type: bytes | None
) -> None:
    def bare(request: protocol.Request) -> None:
        headers = [(protocol.CORRELATION_ID, request.correlation_id.encode()), (protocol.STATUS, b"200")]
        if content_type is not None:
            headers.append((protocol.CONTENT_TYPE, content_type))
        worker.send(request.reply_to, request.reply_partition or 0, headers, b"raw")

    with FakeWorker(harness.cluster, {"bare": bare}) as worker:
        response = await harness.http.post("/rpc/bare", content=b"x")
    assert response.status_code == 200
    assert response.headers["content-type"] == protocol.DEFAULT_CONTENT_TYPE
    assert response.content == b"raw"


@pytest.mark.parametrize("content_type", ["text/plain\x00", "tèxt/plain", "a/" + "b" * 300])
async def test_an_invalid_reply_content_type_is_502_saying_so(harness: Harness, content_type: str) -> None:
    def odd(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply(request.correlation_id, 200, b"x", content_type)

    with FakeWorker(harness.cluster, {"odd": odd}):
        response = await harness.http.post("/rpc/odd", content=b"x")
    body = problem(response, 502)
    assert body["detail"] == "the worker's reply has an invalid content-type"
    assert "status 200" not in body["detail"]


async def test_server_timing_keeps_the_gateways_stages_when_the_worker_sends_no_stamps(
    cluster: FakeKafka,
) -> None:
    async with running(gateway_settings(timing=True), cluster) as harness:
        with FakeWorker(cluster, {"echo": echo}):  # echo() copies no rpc-timing back
            response = await harness.http.post("/rpc/echo", content=b"x")
    names = [part.split(";")[0] for part in response.headers["server-timing"].split(", ")]
    assert names == ["gateway", "handoff", "respond", "total"]


@pytest.mark.parametrize(
    "traceparent",
    [
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
    ],
)
async def test_an_all_zero_trace_or_parent_id_is_not_forwarded(harness: Harness, traceparent: str) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}) as worker:
        response = await harness.http.post(
            "/rpc/echo", content=b"x", headers={"traceparent": traceparent, "tracestate": "a=1"}
        )
    assert response.status_code == 200
    assert worker.requests[0].trace == []


async def test_the_reply_trace_context_is_not_returned_to_the_caller(harness: Harness) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with FakeWorker(harness.cluster, {"echo": echo}):
        response = await harness.http.post("/rpc/echo", content=b"x", headers={"traceparent": traceparent})
    assert "traceparent" not in response.headers


async def test_replies_are_matched_by_the_correlation_id_header_not_the_key(harness: Harness) -> None:
    def keyed(request: protocol.Request) -> None:
        reply = echo(request)
        harness.cluster.append(
            request.reply_to,
            reply.body,
            key=b"some other key",
            headers=reply.headers(),
            partition=request.reply_partition or 0,
        )

    with FakeWorker(harness.cluster, {"keyed": keyed}):
        response = await harness.http.post("/rpc/keyed", content=b"matched")
    assert response.content == b"matched"


async def test_reserved_reply_header_names_match_case_insensitively(harness: Harness) -> None:
    def shouting(request: protocol.Request) -> None:
        headers = [("RPC-Correlation-Id", request.correlation_id.encode()), ("RPC-Status", b"201")]
        worker.send(request.reply_to, request.reply_partition or 0, headers, b"made")

    with FakeWorker(harness.cluster, {"shouting": shouting}) as worker:
        response = await harness.http.post("/rpc/shouting", content=b"x")
    assert response.status_code == 201


async def test_wait_zero_is_the_callers_choice_not_a_timeout(harness: Harness) -> None:
    for _ in range(3):
        response = await harness.http.post("/rpc/echo", content=b"x", headers={"prefer": "wait=0"})
        problem(response, 504)
    assert harness.metric("rpcgw_timeouts_total", method="echo") == 0
    assert harness.metric("rpcgw_requests_total", method="echo", outcome="caller_deadline") == 3
    assert harness.cluster.records("requests") == []

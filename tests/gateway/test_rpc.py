"""POST /rpc/{method} end to end over the in-memory cluster: the production code paths."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError

from gateway.errors import ClientDisconnectedError
from gateway.rpc import read_body
from kafkarpc import protocol, stamps
from tests.fakekafka import FakeKafka

from .conftest import Harness, gateway_settings, running
from .fakes import FakeWorker, echo

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def silent(request: protocol.Request) -> None:
    """A worker that never answers."""


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    body: dict[str, Any] = orjson.loads(response.content)
    assert body["status"] == status
    assert len(body["correlation_id"]) == 32
    assert response.headers["x-correlation-id"] == body["correlation_id"]
    return body


async def test_reply_comes_back_with_body_status_and_content_type(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}):
        response = await harness.http.post(
            "/rpc/echo", content=b'{"a":1}', headers={"content-type": "application/vnd.x+json"}
        )
    assert response.status_code == 200
    assert response.content == b'{"a":1}'
    assert response.headers["content-type"] == "application/vnd.x+json"
    assert len(response.headers["x-correlation-id"]) == 32
    assert "preference-applied" not in response.headers
    assert len(harness.gateway.client._pending) == 0
    assert harness.metric("rpcgw_requests_total", method="echo", outcome="ok") == 1


async def test_request_record_follows_the_wire_contract(harness: Harness) -> None:
    before_ms = time.time() * 1000
    with FakeWorker(harness.cluster, {"echo": echo}) as worker:
        response = await harness.http.post(
            "/rpc/echo",
            content=b"hi",
            headers={
                "traceparent": TRACEPARENT,
                "tracestate": "a=1",
                "idempotency-key": "k-1",
                "authorization": "Bearer secret",
                "cookie": "session=1",
            },
        )
    assert response.status_code == 200
    (request,) = worker.requests
    (record,) = worker.records
    assert record.key() == request.correlation_id.encode()
    assert request.correlation_id == response.headers["x-correlation-id"]
    assert request.reply_to == "replies"
    assert request.reply_partition == harness.gateway.listener.partition
    assert request.method == "echo"
    assert request.content_type == protocol.DEFAULT_CONTENT_TYPE
    assert int(before_ms) + 2000 <= request.deadline_ms <= time.time() * 1000 + 2000
    assert request.trace == [(protocol.TRACEPARENT, TRACEPARENT.encode()), (protocol.TRACESTATE, b"a=1")]
    assert dict(request.extra) == {"accept": b"*/*", "idempotency-key": b"k-1"}
    names = [name for name, _ in (record.headers() or [])]
    assert "authorization" not in names
    assert "cookie" not in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize(
    "headers",
    [
        {"rpc-correlation-id": "0" * 32},
        {"RPC-Reply-To": "elsewhere"},
        {"rpc-anything": "x"},
        {"traceparent": "not-a-trace"},
        [("content-type", "text/plain"), ("content-type", "application/json")],
        [("traceparent", TRACEPARENT), ("traceparent", TRACEPARENT)],
    ],
)
async def test_hostile_or_malformed_headers_are_refused_before_producing(harness: Harness, headers) -> None:
    response = await harness.http.post("/rpc/echo", content=b"x", headers=headers)
    assert_problem(response, 400)
    assert harness.cluster.records("requests") == []


@pytest.mark.parametrize("method", ["bad%20name", "-leading-dash", "x" * 129, "semi;colon"])
async def test_invalid_method_names_are_400(harness: Harness, method: str) -> None:
    response = await harness.http.post(f"/rpc/{method}", content=b"x")
    assert_problem(response, 400)
    assert harness.cluster.records("requests") == []
    assert harness.metric("rpcgw_requests_total", method="_invalid", outcome="bad_request") == 1


async def test_oversized_body_is_413_and_nothing_is_produced(cluster: FakeKafka) -> None:
    settings = gateway_settings(max_body_bytes=10, default_timeout=2.0, max_timeout=5.0)
    async with running(settings, cluster) as harness:
        with FakeWorker(cluster, {"echo": echo}):
            at_limit = await harness.http.post("/rpc/echo", content=b"x" * 10)

            async def chunked() -> AsyncIterator[bytes]:
                yield b"x" * 6
                yield b"x" * 6

            over = await harness.http.post("/rpc/echo", content=b"x" * 11)
            streamed = await harness.http.post("/rpc/echo", content=chunked())
    assert at_limit.status_code == 200
    assert_problem(over, 413)
    assert_problem(streamed, 413)
    assert len(cluster.records("requests")) == 1


def test_default_body_limit_follows_message_max_bytes() -> None:
    settings = gateway_settings()
    assert settings.body_limit({}) == 1_000_000 - 16_384
    assert settings.body_limit({"message.max.bytes": 2_000_000}) == 2_000_000 - 16_384


async def test_timeout_is_504_at_the_deadline_and_counted(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"slow": silent}) as worker:
        started = time.monotonic()
        response = await harness.http.post("/rpc/slow", content=b"x", headers={"prefer": "wait=1"})
        elapsed = time.monotonic() - started
    assert_problem(response, 504)
    assert response.headers["preference-applied"] == "wait=1"
    assert elapsed >= 1.0
    (request,) = worker.requests
    assert request.deadline_ms <= time.time() * 1000
    assert harness.metric("rpcgw_timeouts_total", method="slow") == 1
    assert harness.metric("rpcgw_requests_total", method="slow", outcome="timeout") == 1
    assert len(harness.gateway.client._pending) == 0


async def test_wait_above_the_maximum_is_capped_and_not_reported_as_applied(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}) as worker:
        sent_ms = time.time() * 1000
        response = await harness.http.post("/rpc/echo", content=b"x", headers={"prefer": "wait=3600"})
    assert response.status_code == 200
    assert "preference-applied" not in response.headers
    (request,) = worker.requests
    assert int(sent_ms) + 5000 <= request.deadline_ms <= time.time() * 1000 + 5000


async def test_wait_zero_times_out_without_producing(harness: Harness) -> None:
    response = await harness.http.post(
        "/rpc/echo", content=b"x", headers={"prefer": "return=minimal, wait=0"}
    )
    assert_problem(response, 504)
    assert harness.cluster.records("requests") == []


async def test_late_reply_is_dropped_counted_and_harmless(harness: Harness) -> None:
    release, sent = threading.Event(), threading.Event()
    worker = FakeWorker(harness.cluster, {"echo": echo})

    def late(request: protocol.Request) -> None:
        release.wait(10)
        worker.reply(request, echo(request))
        sent.set()

    worker.handlers["late"] = late
    with worker:
        timed_out = await harness.http.post("/rpc/late", content=b"x", headers={"prefer": "wait=1"})
        assert timed_out.status_code == 504
        release.set()
        assert await asyncio.to_thread(sent.wait, 10)
        # Same partition, later offset: once this reply is routed, the late one was too.
        ok = await harness.http.post("/rpc/echo", content=b"after")
    assert ok.status_code == 200
    assert ok.content == b"after"
    assert harness.metric("rpcgw_late_replies_total") == 1
    assert harness.metric("rpcgw_unmatched_replies_total") == 0
    assert len(harness.gateway.client._pending) == 0


async def test_malformed_and_foreign_replies_are_dropped_and_counted(harness: Harness) -> None:
    partition = harness.gateway.listener.partition
    assert partition is not None
    ours = harness.gateway.ids.tag + "0" * 24
    with FakeWorker(harness.cluster, {"echo": echo}) as worker:
        worker.send("replies", partition, [(protocol.CORRELATION_ID, b"f" * 32)], b"no status")
        duplicated = [
            (protocol.CORRELATION_ID, ours.encode()),
            (protocol.STATUS, b"200"),
            (protocol.CORRELATION_ID, b"a" * 32),
        ]
        worker.send("replies", partition, duplicated, b"two ids")
        worker.send("replies", partition, None, None)
        worker.send("replies", partition, protocol.Reply("f" * 32, 200, b"other").headers(), b"other")
        response = await harness.http.post("/rpc/echo", content=b"mine")
    assert response.content == b"mine"
    assert harness.metric("rpcgw_malformed_replies_total") == 3
    assert harness.metric("rpcgw_unmatched_replies_total") == 1


async def test_worker_error_is_502_with_the_workers_detail(harness: Harness) -> None:
    def fail(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply.problem(request.correlation_id, 500, "Internal Server Error", "database down")

    def missing(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply.problem(request.correlation_id, 404, "Not Found", "no order 7")

    with FakeWorker(harness.cluster, {"fail": fail, "missing": missing}):
        failed = await harness.http.post("/rpc/fail", content=b"x")
        not_found = await harness.http.post("/rpc/missing", content=b"x")
    body = assert_problem(failed, 502)
    assert body["detail"] == "database down"
    assert body["worker_status"] == 500
    assert not_found.status_code == 404
    assert not_found.headers["content-type"] == protocol.PROBLEM_JSON
    assert orjson.loads(not_found.content)["detail"] == "no order 7"
    assert harness.metric("rpcgw_requests_total", method="fail", outcome="worker_error") == 1
    assert harness.metric("rpcgw_requests_total", method="missing", outcome="rejected") == 1


async def test_reply_with_a_header_splitting_content_type_is_502(harness: Harness) -> None:
    def hostile(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply(request.correlation_id, 200, b"x", "text/plain\r\nset-cookie: a=b")

    with FakeWorker(harness.cluster, {"hostile": hostile}):
        response = await harness.http.post("/rpc/hostile", content=b"x")
    assert_problem(response, 502)
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("shed_status", [429, 503])
async def test_pending_cap_sheds_with_retry_after(cluster: FakeKafka, shed_status: int) -> None:
    settings = gateway_settings(max_pending=2, shed_status=shed_status, retry_after=3, default_timeout=5.0)
    release = threading.Event()

    def held(request: protocol.Request) -> protocol.Reply:
        release.wait(10)
        return echo(request)

    async with running(settings, cluster) as harness:
        with FakeWorker(cluster, {"held": held}) as worker:
            first = [asyncio.create_task(harness.http.post("/rpc/held", content=b"x")) for _ in range(2)]
            # A request reaches the worker only after its future was registered.
            assert await asyncio.to_thread(worker.wait_requests, 2)
            shed = await harness.http.post("/rpc/held", content=b"x")
            release.set()
            answered = await asyncio.gather(*first)
            produced = len(worker.requests)
        body = assert_problem(shed, shed_status)
        assert shed.headers["retry-after"] == "3"
        assert "pending" in body["detail"]
        assert [r.status_code for r in answered] == [200, 200]
        assert produced == 2
        assert harness.metric("rpcgw_shed_requests_total", reason="pending_cap") == 1
        assert len(harness.gateway.client._pending) == 0


async def test_full_producer_queue_is_503_with_retry_after(harness: Harness) -> None:
    harness.cluster.queue_full = True
    response = await harness.http.post("/rpc/echo", content=b"x")
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "1"
    assert len(harness.gateway.client._pending) == 0
    assert harness.metric("rpcgw_produce_errors_total", error="_QUEUE_FULL") == 1


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (KafkaError._MSG_TIMED_OUT, 504),
        (KafkaError.MSG_SIZE_TOO_LARGE, 413),
        (KafkaError.TOPIC_AUTHORIZATION_FAILED, 503),
    ],
)
async def test_failed_delivery_fails_the_request_at_once(harness: Harness, code: int, status: int) -> None:
    harness.cluster.delivery_error = KafkaError(code)
    started = time.monotonic()
    response = await harness.http.post("/rpc/echo", content=b"x")
    assert time.monotonic() - started < 2.0  # well before the 2 s deadline: the report failed it
    assert_problem(response, status)
    assert len(harness.gateway.client._pending) == 0
    assert harness.metric("rpcgw_produce_errors_total", error=KafkaError(code).name()) == 1


async def test_unknown_route_is_a_problem_document(harness: Harness) -> None:
    response = await harness.http.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == protocol.PROBLEM_JSON


async def test_method_label_cardinality_is_capped(cluster: FakeKafka) -> None:
    settings = gateway_settings(metric_methods_limit=2, default_timeout=1.0)
    async with running(settings, cluster) as harness:
        with FakeWorker(cluster, {m: echo for m in ("a", "b", "c")}):
            for method in ("a", "b", "c"):
                assert (await harness.http.post(f"/rpc/{method}", content=b"x")).status_code == 200
        assert harness.metric("rpcgw_requests_total", method="c", outcome="ok") == 0
        assert harness.metric("rpcgw_requests_total", method="_other", outcome="ok") == 1


async def test_a_methods_timeout_series_exists_at_zero_from_its_first_call(harness: Harness) -> None:
    """So the first timeouts of a method that was fine are an increase Prometheus' rate() sees."""
    before = (await harness.http.get("/metrics")).text
    assert 'rpcgw_shed_requests_total{reason="pending_cap"} 0.0' in before  # from the start
    assert 'method="echo"' not in before
    with FakeWorker(harness.cluster, {"echo": echo}):
        assert (await harness.http.post("/rpc/echo", content=b"x")).status_code == 200
    after = (await harness.http.get("/metrics")).text
    assert 'rpcgw_timeouts_total{method="echo"} 0.0' in after
    assert 'rpcgw_requests_total{method="echo",outcome="timeout"} 0.0' in after


async def test_metrics_endpoint_exposes_conventional_names(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}):
        await harness.http.post("/rpc/echo", content=b"x")
    text = (await harness.http.get("/metrics")).text
    for name in (
        'rpcgw_requests_total{method="echo",outcome="ok"} 1.0',
        'rpcgw_request_duration_seconds_bucket{le="5.0",method="echo"} 1.0',
        "rpcgw_pending_requests 0.0",
        "rpcgw_reply_consumer_lag",
        "rpcgw_late_replies_total 0.0",
        "rpcgw_build_info",
        "process_cpu_seconds_total",
    ):
        assert name in text


async def test_other_methods_on_rpc_are_405_with_allow(harness: Harness) -> None:
    response = await harness.http.get("/rpc/echo")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == protocol.PROBLEM_JSON


async def test_openapi_still_describes_the_rpc_endpoint(harness: Harness) -> None:
    document = (await harness.http.get("/openapi.json")).json()
    assert "post" in document["paths"]["/rpc/{method}"]
    assert "/publish/{topic}" in document["paths"]


async def test_timing_off_by_default_sends_no_stamps_and_no_server_timing(harness: Harness) -> None:
    def timed_echo(request: protocol.Request) -> protocol.Reply:
        # A worker stamping on its own does not make the gateway publish timings.
        return protocol.Reply(request.correlation_id, 200, request.body, timing="worker_in=1,worker_out=2")

    with FakeWorker(harness.cluster, {"echo": timed_echo}) as worker:
        response = await harness.http.post("/rpc/echo", content=b"x")
    assert response.status_code == 200
    assert "server-timing" not in response.headers
    assert protocol.TIMING not in dict(worker.records[0].headers() or [])


async def test_timing_stamps_the_request_and_answers_with_server_timing(cluster: FakeKafka) -> None:
    def stamping_echo(request: protocol.Request) -> protocol.Reply:
        timing = stamps.stamp(request.timing, "worker_fetched")
        timing = stamps.stamp(stamps.stamp(timing, "worker_in"), "worker_out")
        return protocol.Reply(request.correlation_id, 200, request.body, timing=timing)

    async with running(gateway_settings(timing=True), cluster) as harness:
        with FakeWorker(cluster, {"echo": stamping_echo}) as worker:
            before = time.time() * 1_000_000
            response = await harness.http.post("/rpc/echo", content=b"x")
    assert response.status_code == 200
    sent = stamps.stamps(worker.requests[0].timing)
    assert list(sent) == ["http_in", "produced"]
    assert before <= sent["http_in"] <= sent["produced"]
    durations = {
        name: float(params.split("=")[1])
        for name, _, params in (part.partition(";") for part in response.headers["server-timing"].split(", "))
    }
    parts = ["gateway", "request-hop", "worker-queue", "worker", "reply-hop", "handoff", "respond"]
    assert list(durations) == [*parts, "total"]
    assert all(value >= 0 for value in durations.values())
    assert sum(durations[name] for name in parts) == pytest.approx(durations["total"], abs=0.01)


async def test_a_worker_that_does_not_stamp_its_fetch_gets_a_request_hop_up_to_its_start(
    cluster: FakeKafka,
) -> None:
    def stamping_echo(request: protocol.Request) -> protocol.Reply:
        timing = stamps.stamp(stamps.stamp(request.timing, "worker_in"), "worker_out")
        return protocol.Reply(request.correlation_id, 200, request.body, timing=timing)

    async with running(gateway_settings(timing=True), cluster) as harness:
        with FakeWorker(cluster, {"echo": stamping_echo}):
            response = await harness.http.post("/rpc/echo", content=b"x")
    names = [part.split(";")[0] for part in response.headers["server-timing"].split(", ")]
    # No worker-queue: without `worker_fetched` it is unknown, not zero.
    assert names == ["gateway", "request-hop", "worker", "reply-hop", "handoff", "respond", "total"]


async def test_a_bug_in_the_endpoint_is_a_500_problem_and_logged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(wait: int | None) -> tuple[float, bool]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(harness.gateway.client, "timeout_for", broken)
    response = await harness.http.post("/rpc/echo", content=b"x")
    assert_problem(response, 500)
    assert "secret" not in response.text
    assert any(record.exc_info and "secret internals" in str(record.exc_info[1]) for record in caplog.records)


async def test_a_caller_leaving_mid_body_is_a_disconnect_not_a_crash() -> None:
    messages: Iterator[dict[str, Any]] = iter(
        [{"type": "http.request", "body": b"ab", "more_body": True}, {"type": "http.disconnect"}]
    )

    async def receive() -> dict[str, Any]:
        return next(messages)

    with pytest.raises(ClientDisconnectedError):
        await read_body(receive, 100, None)


async def test_a_hostile_timing_header_cannot_break_a_successful_reply(cluster: FakeKafka) -> None:
    def hostile(request: protocol.Request) -> protocol.Reply:
        timing = request.timing + ",worker_in=1,worker_out=" + "9" * 5000
        return protocol.Reply(request.correlation_id, 200, b"fine", timing=timing)

    async with running(gateway_settings(timing=True), cluster) as harness:
        with FakeWorker(cluster, {"echo": hostile}):
            response = await harness.http.post("/rpc/echo", content=b"x")
    assert response.status_code == 200
    assert response.content == b"fine"
    names = [part.split(";")[0] for part in response.headers["server-timing"].split(", ")]
    # The garbage stamp is dropped; so is the hop it would end (worker_in went backwards).
    assert names == ["gateway", "handoff", "respond", "total"]


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_statuses_carry_no_body_and_no_content_length(harness: Harness, status: int) -> None:
    def bodyless(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply(request.correlation_id, status, b"ignored")

    with FakeWorker(harness.cluster, {"m": bodyless}):
        response = await harness.http.post("/rpc/m", content=b"x")
    assert response.status_code == status
    assert response.content == b""
    assert "content-length" not in response.headers


@pytest.mark.parametrize("path", ["/rpc/", "/rpc/a/b", "/rpc/echo/"])
async def test_paths_that_name_no_method_are_404(harness: Harness, path: str) -> None:
    response = await harness.http.post(path, content=b"x")
    assert response.status_code == 404
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    assert harness.metric("rpcgw_requests_total", method="_invalid", outcome="bad_request") == 0

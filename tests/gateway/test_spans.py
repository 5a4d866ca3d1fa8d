"""The gateway's spans, read back from the SDK's in-memory exporter: what a trace backend gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from confluent_kafka import KafkaError
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from gateway.settings import GatewaySettings
from kafkarpc import protocol
from tests.fakekafka import FakeKafka
from tests.tracer import MemoryTracing

from .conftest import Harness, running
from .fakes import FakeWorker, echo
from .test_catalog import THINGS, announce, until

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
DURATION = "rpcgw_request_duration_seconds"
OPENMETRICS = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture
def traces() -> Iterator[MemoryTracing]:
    memory = MemoryTracing.start("kafka-rpc-gateway")
    yield memory
    memory.close()


@pytest.fixture
async def traced(
    settings: GatewaySettings, cluster: FakeKafka, traces: MemoryTracing
) -> AsyncIterator[Harness]:
    async with running(settings, cluster, tracer=traces.tracer) as harness:
        yield harness


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [span.name for span in spans]
    return spans[0]


async def test_a_call_is_a_server_span_with_the_produce_and_the_reply_as_children(
    traced: Harness, traces: MemoryTracing
) -> None:
    with FakeWorker(traced.cluster, {"echo": echo}) as worker:
        response = await traced.http.post(
            "/rpc/echo", content=b"hi", headers={"traceparent": TRACEPARENT, "tracestate": "vendor=1"}
        )
    assert response.status_code == 200
    server = only(traces.named("POST"))
    producer = only(traces.named("send requests"))
    arrival = only(traces.named("receive replies"))
    # The caller's trace goes on: the server span is its child, the rest are the server span's.
    assert server.kind is SpanKind.SERVER
    assert format(server.context.trace_id, "032x") == CALLER_TRACE
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == CALLER_SPAN
    assert producer.kind is SpanKind.PRODUCER
    assert arrival.kind is SpanKind.CONSUMER
    assert producer.parent is not None
    assert producer.parent.span_id == server.context.span_id
    assert arrival.parent is not None
    assert arrival.parent.span_id == server.context.span_id
    # The record carries the producer span's context (and the caller's tracestate) to the worker.
    sent = dict(worker.requests[0].trace)
    assert sent["traceparent"] == f"00-{CALLER_TRACE}-{producer.context.span_id:016x}-01".encode()
    assert sent["tracestate"] == b"vendor=1"
    # The fake worker copies the request's context onto the reply: the arrival links to it.
    assert [link.context.span_id for link in arrival.links] == [producer.context.span_id]
    assert server.name == "POST /rpc/{method}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/rpc/{method}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["rpc.method"] == "echo"
    assert server.attributes["messaging.message.conversation_id"] == response.headers["x-correlation-id"]
    assert server.status.status_code is StatusCode.UNSET
    assert producer.attributes is not None
    assert producer.attributes["messaging.system"] == "kafka"
    assert producer.attributes["messaging.destination.name"] == "requests"
    # The arrival spans the reply's fetch to its match, stamped by the consumer thread and the loop.
    assert arrival.start_time is not None
    assert arrival.end_time is not None
    assert producer.end_time is not None
    assert producer.end_time <= arrival.start_time <= arrival.end_time


async def test_a_call_without_trace_context_starts_a_trace(traced: Harness, traces: MemoryTracing) -> None:
    with FakeWorker(traced.cluster, {"echo": echo}) as worker:
        assert (await traced.http.post("/rpc/echo", content=b"hi")).status_code == 200
    server = only(traces.named("POST"))
    assert server.parent is None
    assert dict(worker.requests[0].trace)["traceparent"].startswith(
        f"00-{server.context.trace_id:032x}".encode()
    )


async def test_a_timeout_marks_the_server_span_failed_with_why(
    settings: GatewaySettings, cluster: FakeKafka, traces: MemoryTracing
) -> None:
    async with running(settings, cluster, tracer=traces.tracer) as harness:
        with FakeWorker(harness.cluster, {"slow": lambda _: None}):
            response = await harness.http.post("/rpc/slow", content=b"x", headers={"prefer": "wait=1"})
    assert response.status_code == 504
    server = only(traces.named("POST"))
    assert server.status.status_code is StatusCode.ERROR
    assert server.status.description == "no reply within 1 s"
    assert server.attributes is not None
    assert server.attributes["error.type"] == "timeout"
    assert server.attributes["http.response.status_code"] == 504
    assert not traces.named("receive")  # no reply arrived


async def test_a_worker_error_marks_the_server_span_failed_and_a_4xx_does_not(
    traced: Harness, traces: MemoryTracing
) -> None:
    def fail(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply.problem(request.correlation_id, 500, "Internal Server Error", "database down")

    def missing(request: protocol.Request) -> protocol.Reply:
        return protocol.Reply.problem(request.correlation_id, 404, "Not Found", "no order 7")

    with FakeWorker(traced.cluster, {"fail": fail, "missing": missing}):
        assert (await traced.http.post("/rpc/fail", content=b"x")).status_code == 502
        assert (await traced.http.post("/rpc/missing", content=b"x")).status_code == 404
    failed, rejected = sorted(
        traces.named("POST"), key=lambda span: str((span.attributes or {})["rpc.method"])
    )
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "database down"
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "worker_error"
    # A 4xx is the caller's error, not the server's (HTTP semantic conventions).
    assert rejected.status.status_code is StatusCode.UNSET
    assert rejected.attributes is not None
    assert "error.type" not in rejected.attributes
    assert rejected.attributes["http.response.status_code"] == 404


async def test_a_shed_call_is_marked_shed(cluster: FakeKafka, traces: MemoryTracing) -> None:
    settings = GatewaySettings(unknown_methods="forward", max_pending=1, default_timeout=2.0)
    async with running(settings, cluster, tracer=traces.tracer) as harness:
        with FakeWorker(harness.cluster, {"slow": lambda _: None}) as worker:
            first = asyncio.ensure_future(
                harness.http.post("/rpc/slow", content=b"x", headers={"prefer": "wait=2"})
            )
            assert await asyncio.to_thread(worker.wait_requests, 1)
            shed = await harness.http.post("/rpc/slow", content=b"y")
            await first
    assert shed.status_code == 503
    spans = {str(span.attributes["rpcgw.outcome"]): span for span in traces.named("POST") if span.attributes}
    assert spans["shed"].status.status_code is StatusCode.ERROR
    assert spans["shed"].attributes is not None
    assert spans["shed"].attributes["error.type"] == "shed"


async def test_probes_and_metrics_are_not_traced(traced: Harness, traces: MemoryTracing) -> None:
    for path in ("/healthz", "/readyz", "/metrics"):
        await traced.http.get(path)
    await traced.http.get("/asyncapi.json")
    await traced.http.get("/results/secret-capability-token")
    asyncapi, result = traces.spans()
    assert [asyncapi.name, result.name] == ["GET /asyncapi.json", "GET /results/{token}"]
    # A result token is a capability: neither the name nor url.path may carry it to the backend.
    assert result.attributes is not None
    assert result.attributes["url.path"] == "/results/{token}"
    assert "secret-capability-token" not in result.to_json()


async def test_the_latency_histogram_carries_the_trace_id_as_an_exemplar(
    traced: Harness, traces: MemoryTracing
) -> None:
    with FakeWorker(traced.cluster, {"echo": echo}):
        await traced.http.post("/rpc/echo", content=b"hi", headers={"traceparent": TRACEPARENT})
    scraped = await traced.http.get("/metrics", headers={"accept": OPENMETRICS})
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    buckets = [line for line in scraped.text.splitlines() if line.startswith(f"{DURATION}_bucket")]
    assert any(f'method="echo"}} 1.0 # {{trace_id="{CALLER_TRACE}"}}' in line for line in buckets), buckets
    # The classic text format has no exemplars: a scraper that does not ask gets what it always got.
    assert "trace_id" not in (await traced.http.get("/metrics")).text


async def test_an_unsampled_call_has_no_exemplar(
    cluster: FakeKafka, settings: GatewaySettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
    traces = MemoryTracing.start("kafka-rpc-gateway")
    try:
        async with running(settings, cluster, tracer=traces.tracer) as harness:
            with FakeWorker(harness.cluster, {"echo": echo}):
                assert (await harness.http.post("/rpc/echo", content=b"hi")).status_code == 200
            scraped = await harness.http.get("/metrics", headers={"accept": OPENMETRICS})
        assert traces.spans() == []
        assert "trace_id" not in scraped.text
    finally:
        traces.close()


async def test_a_catalog_route_names_its_span_by_its_template(
    cluster: FakeKafka, traces: MemoryTracing
) -> None:
    async with running(GatewaySettings(default_timeout=2.0), cluster, tracer=traces.tracer) as harness:
        announce(harness.cluster, THINGS)
        catalog = harness.gateway.catalog
        assert catalog is not None
        await until(lambda: catalog.serves("things.get"))
        with FakeWorker(harness.cluster, {"things.get": echo}):
            assert (await harness.http.get("/things/7")).status_code == 200
    server = only(traces.named("GET"))
    assert server.name == "GET /things/{thing_id}"
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/things/{thing_id}"
    assert server.attributes["url.path"] == "/things/7"


async def test_a_respond_async_request_kafka_refuses_fails_its_producer_span(
    traced: Harness, traces: MemoryTracing
) -> None:
    traced.cluster.delivery_error = KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED)
    response = await traced.http.post("/rpc/slow", content=b"x", headers={"prefer": "respond-async"})
    assert response.status_code == 503
    producer = only(traces.named("send requests"))
    assert producer.status.status_code is StatusCode.ERROR
    assert producer.attributes is not None
    assert producer.attributes["error.type"] == "TOPIC_AUTHORIZATION_FAILED"

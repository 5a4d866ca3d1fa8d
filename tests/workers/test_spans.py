"""The worker's spans on the in-memory broker, read back from the SDK's in-memory exporter."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from kafkarpc.protocol import Reply, Request
from kafkarpc.tracing import Tracer
from tests.fakekafka import FakeKafka
from tests.tracer import MemoryTracing
from tests.workers.conftest import DLT, REPLIES, request, send, serving
from workers.errors import HandlerError
from workers.registry import HandlerRegistry

GATEWAY_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GATEWAY_SPAN = "00f067aa0ba902b7"
TRACE = [("traceparent", f"00-{GATEWAY_TRACE}-{GATEWAY_SPAN}-01".encode())]


@pytest.fixture
def traces() -> Iterator[MemoryTracing]:
    memory = MemoryTracing.start("kafka-rpc-worker")
    yield memory
    memory.close()


def registry(tracer: Tracer) -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handlers.handler("echo")
    def echo(req: Request) -> bytes:
        # A handler's own span (its database call, say) nests under the worker's, in its thread too.
        with tracer.start_as_current_span("query orders"):
            return req.body

    @handlers.handler("crash")
    async def crash(req: Request) -> None:
        raise RuntimeError("password=hunter2")

    return handlers


def traced(req: Request) -> Request:
    return dataclasses.replace(req, trace=TRACE)


def by_name(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    named = {span.name: span for span in spans}
    assert len(named) == len(spans), [span.name for span in spans]
    return named


def child_of(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


async def test_a_request_continues_the_callers_trace_and_its_reply_carries_it_back(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    req = traced(request("echo", b"hi"))
    async with serving(broker, registry(traces.tracer), tracer=traces.tracer):
        send(broker, req)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
    spans = by_name(traces.spans())
    process, handle, query, reply = (
        spans["process requests"],
        spans["handle echo"],
        spans["query orders"],
        spans["send replies"],
    )
    assert process.kind is SpanKind.CONSUMER
    assert format(process.context.trace_id, "032x") == GATEWAY_TRACE
    assert process.parent is not None
    assert format(process.parent.span_id, "016x") == GATEWAY_SPAN
    assert child_of(handle, process)
    assert child_of(query, handle)
    assert reply.kind is SpanKind.PRODUCER
    assert child_of(reply, process)
    assert process.attributes is not None
    assert process.attributes["messaging.message.conversation_id"] == req.correlation_id
    assert process.attributes["messaging.consumer.group.name"] == "rpc-workers"
    # The reply names the worker's reply span as its parent: the trace survives the reply hop.
    record = broker.records(REPLIES)[0]
    sent = Reply.from_record(record.value(), record.headers())
    assert dict(sent.trace)["traceparent"] == f"00-{GATEWAY_TRACE}-{reply.context.span_id:016x}-01".encode()
    assert all(span.status.status_code is StatusCode.UNSET for span in spans.values())


async def test_a_failing_handler_marks_its_span_failed_without_its_secrets(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    async with serving(broker, registry(traces.tracer), tracer=traces.tracer):
        send(broker, traced(request("crash")))
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
    handle = by_name(traces.spans())["handle crash"]
    assert handle.status.status_code is StatusCode.ERROR
    assert handle.status.description is not None
    assert "RuntimeError" in handle.status.description
    assert "hunter2" not in str(handle.to_json())  # the message stays in the log
    assert handle.attributes is not None
    assert handle.attributes["error.type"] == "500"


async def test_a_dead_letter_marks_the_process_span_failed_with_the_reason(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    async with serving(broker, registry(traces.tracer), tracer=traces.tracer):
        send(broker, traced(request("nobody-serves-this")))
        await broker.wait_for(lambda: len(broker.records(DLT)) == 1)
    process = by_name(traces.spans())["process requests"]
    assert process.status.status_code is StatusCode.ERROR
    assert process.status.description is not None
    assert process.status.description.startswith("unknown-method: no handler for method")
    assert process.attributes is not None
    assert process.attributes["error.type"] == "dead_letter"


async def test_without_a_tracer_the_reply_carries_the_requests_context(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    req = traced(request("echo", b"hi"))
    async with serving(broker, registry(traces.tracer)):  # the worker has no tracer; the handler's is unused
        send(broker, req)
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
    record = broker.records(REPLIES)[0]
    assert Reply.from_record(record.value(), record.headers()).trace == TRACE


def streaming_registry() -> HandlerRegistry:
    handlers = HandlerRegistry()

    @handlers.handler("ticks")
    async def ticks() -> AsyncIterator[int]:
        for i in range(3):
            yield i

    @handlers.handler("broken")
    async def broken(req: Request) -> AsyncIterator[int]:
        if not req.body:  # a generator whose first step fails
            raise HandlerError(503, "no ticks today")
        yield 0

    return handlers


async def test_a_streamed_reply_carries_the_workers_stream_span_in_every_record(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    req = traced(request("ticks"))
    async with serving(broker, streaming_registry(), tracer=traces.tracer) as h:
        send(broker, req)
        await broker.wait_for(lambda: len(h.stream(req.correlation_id)) == 4)  # 3 parts and the end
    spans = by_name(traces.spans())
    handle, stream = spans["handle ticks"], spans["send replies"]
    assert stream.kind is SpanKind.PRODUCER
    assert child_of(stream, handle)  # the parts go out while the handler runs
    records = h.stream(req.correlation_id)
    sent = {dict(Reply.from_record(m.value(), m.headers()).trace)["traceparent"] for m in records}
    assert sent == {f"00-{GATEWAY_TRACE}-{stream.context.span_id:016x}-01".encode()}


async def test_a_stream_that_fails_before_its_first_part_marks_its_handler_span(
    broker: FakeKafka, traces: MemoryTracing
) -> None:
    async with serving(broker, streaming_registry(), tracer=traces.tracer):
        send(broker, traced(request("broken")))
        await broker.wait_for(lambda: len(broker.records(REPLIES)) == 1)
    handle = next(span for span in traces.spans() if span.name == "handle broken")
    assert handle.status.status_code is StatusCode.ERROR
    assert handle.status.description == "no ticks today"

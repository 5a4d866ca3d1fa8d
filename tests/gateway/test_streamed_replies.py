"""Streamed replies and cancel records over the in-memory cluster: the production code paths."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import orjson
import pytest

from gateway.parts import PartFormat, PartStream, StreamBroken
from kafkarpc import protocol
from kafkarpc.catalog import Entry, Method
from tests.fakekafka import FakeKafka

from .conftest import CATALOG, Harness, gateway_settings, running
from .fakes import FakeWorker

SSE = {"accept": "text/event-stream"}


def part(
    request: protocol.Request, sequence: int, body: bytes, content_type: str = "application/json"
) -> protocol.Reply:
    return protocol.Reply(request.correlation_id, 200, body, content_type, sequence=sequence, final=False)


def end(request: protocol.Request, sequence: int, status: int = 200, body: bytes = b"") -> protocol.Reply:
    content_type = protocol.PROBLEM_JSON if status >= 400 else "application/json"
    return protocol.Reply(request.correlation_id, status, body, content_type, sequence=sequence, final=True)


def streaming(
    worker: Callable[[], FakeWorker], records: Callable[[protocol.Request], list[protocol.Reply]]
) -> Callable[[protocol.Request], None]:
    """A handler that produces ``records(request)`` one after another, in order."""

    def handle(request: protocol.Request) -> None:
        for record in records(request):
            worker().reply(request, record)

    return handle


def counting(n: int) -> Callable[[protocol.Request], list[protocol.Reply]]:
    return lambda r: [*(part(r, i, b'{"i": %d}' % i) for i in range(n)), end(r, n)]


def announce(cluster: FakeKafka, *methods: Method) -> None:
    entry = Entry("things", "i1", int(time.time() * 1000), methods)
    cluster.append(CATALOG, entry.value(), key=entry.key)


@pytest.fixture
async def quick(cluster: FakeKafka) -> AsyncIterator[Harness]:
    settings = gateway_settings(
        default_timeout=2.0, max_timeout=5.0, reply_stream_idle_timeout=0.3, reply_stream_buffer=8
    )
    async with running(settings, cluster) as h:
        yield h


def serve(harness: Harness, records: Callable[[protocol.Request], list[protocol.Reply]]) -> FakeWorker:
    box: list[FakeWorker] = []
    worker = FakeWorker(harness.cluster, {"count": streaming(lambda: box[0], records)})
    box.append(worker)
    return worker


async def test_json_parts_arrive_in_order_as_ndjson(quick: Harness) -> None:
    with serve(quick, counting(50)):
        response = await quick.http.post("/rpc/count", content=b"{}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["cache-control"] == "no-store"
    lines = response.content.splitlines()
    assert [orjson.loads(line)["i"] for line in lines] == list(range(50))
    assert quick.metric("rpcgw_streamed_replies_total", method="count", outcome="complete") == 1
    assert quick.gateway.client.parts(response.headers["x-correlation-id"]) is None  # forgotten


async def test_event_stream_has_one_event_per_part_and_an_end(quick: Harness) -> None:
    with serve(quick, counting(3)):
        response = await quick.http.post("/rpc/count", content=b"{}", headers=SSE)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    events = response.content.decode().split("\n\n")
    assert events[:3] == [f'id: {i}\ndata: {{"i": {i}}}' for i in range(3)]
    assert events[3] == 'event: end\ndata: {"parts": 3}'


async def test_a_missing_part_ends_the_stream_with_an_error_event(quick: Harness) -> None:
    def gap(r: protocol.Request) -> list[protocol.Reply]:
        return [part(r, 0, b"0"), part(r, 1, b"1"), part(r, 3, b"3"), end(r, 4)]

    with serve(quick, gap):
        response = await quick.http.post("/rpc/count", content=b"{}", headers=SSE)
    events = response.content.decode().split("\n\n")
    assert events[:2] == ["id: 0\ndata: 0", "id: 1\ndata: 1"]
    assert events[2].startswith("event: error\ndata: ")
    problem = orjson.loads(events[2].split("data: ", 1)[1])
    assert problem["status"] == 502
    assert "part 2 of the stream is missing" in problem["detail"]
    assert quick.metric("rpcgw_streamed_replies_total", method="count", outcome="broken") == 1


async def test_a_duplicate_part_ends_the_ndjson_stream_with_an_error_line(quick: Harness) -> None:
    def twice(r: protocol.Request) -> list[protocol.Reply]:
        return [part(r, 0, b"0"), part(r, 1, b"1"), part(r, 0, b"0"), end(r, 2)]

    with serve(quick, twice):
        response = await quick.http.post("/rpc/count", content=b"{}")
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines[:2] == [0, 1]
    assert "part 0 of the stream came twice" in lines[2]["error"]["detail"]


async def test_a_worker_failing_mid_stream_gives_its_problem_as_the_error(quick: Harness) -> None:
    problem = protocol.problem_body(409, "Conflict", "the report changed", correlation_id="x")

    def failing(r: protocol.Request) -> list[protocol.Reply]:
        return [part(r, 0, b"0"), end(r, 1, 409, problem)]

    with serve(quick, failing):
        response = await quick.http.post("/rpc/count", content=b"{}", headers=SSE)
    events = response.content.decode().split("\n\n")
    assert events[1] == "event: error\ndata: " + problem.decode()
    assert quick.metric("rpcgw_streamed_replies_total", method="count", outcome="error") == 1


async def test_a_worker_that_goes_quiet_gets_an_idle_error_and_a_cancel(quick: Harness) -> None:
    announce(quick.cluster, Method("count", streaming=True, cancellable=True))
    await until(lambda: "count" in quick.app.catalog.served)  # type: ignore[attr-defined]
    with serve(quick, lambda r: [part(r, 0, b"0")]):
        response = await quick.http.post("/rpc/count", content=b"{}", headers=SSE)
    events = response.content.decode().split("\n\n")
    assert events[0] == "id: 0\ndata: 0"
    assert orjson.loads(events[1].split("data: ", 1)[1])["status"] == 504
    cancels = cancel_records(quick.cluster)
    assert [(c.correlation_id, c.reason) for c in cancels] == [
        (response.headers["x-correlation-id"], protocol.CancelReason.STREAM_IDLE)
    ]
    assert quick.metric("rpcgw_cancels_total", reason="stream-idle") == 1
    request = protocol.Request.from_record(*request_record(quick.cluster))
    assert request.stream_deadline_ms is not None
    assert request.stream_deadline_ms > request.deadline_ms  # the stream may outlast the first part's wait


async def test_text_parts_are_sent_as_they_are(quick: Harness) -> None:
    def words(r: protocol.Request) -> list[protocol.Reply]:
        texts = [b"Hello", b", ", b"world"]
        return [*(part(r, i, t, content_type="text/plain") for i, t in enumerate(texts)), end(r, 3)]

    with serve(quick, words):
        response = await quick.http.post("/rpc/count", content=b"{}")
    assert response.headers["content-type"] == "text/plain"
    assert response.content == b"Hello, world"


async def test_a_timeout_sends_a_cancel_only_for_a_method_that_reads_them(quick: Harness) -> None:
    announce(quick.cluster, Method("slow", cancellable=True), Method("old"))
    await until(lambda: {"slow", "old"} <= set(quick.app.catalog.served))  # type: ignore[attr-defined]
    slow = await quick.http.post("/rpc/slow", content=b"x", headers={"prefer": "wait=1"})
    old = await quick.http.post("/rpc/old", content=b"x", headers={"prefer": "wait=1"})
    assert slow.status_code == old.status_code == 504
    cancels = cancel_records(quick.cluster)
    assert [(c.correlation_id, c.reason) for c in cancels] == [(slow.headers["x-correlation-id"], "deadline")]
    # Each cancel rides its request's key, so it lands in the request's partition.
    keyed = {m.key(): m.partition() for m in quick.cluster.records("requests")}
    assert len(keyed) == 2  # two requests, one cancel sharing the first's key


def test_part_stream_breaks_when_the_reader_falls_behind() -> None:
    request = protocol.Request("a" * 32, "replies", 0, "count", 0, b"")
    closed: list[bool] = []
    stream = PartStream(part(request, 0, b"0"), 2, lambda: closed.append(True))
    for sequence in (1, 2, 3):
        stream.push(part(request, sequence, b"x"))
    assert reason(stream) is None  # a burst within one batch: the reader had no chance yet
    stream.settle()
    stream.push(part(request, 4, b"x"))
    assert reason(stream) == protocol.CancelReason.STREAM_OVERFLOW

    async def read() -> None:
        with pytest.raises(StreamBroken):
            await stream.next()

    asyncio.run(read())
    stream.close()
    stream.close()
    assert closed == [True]


def test_pretty_printed_json_parts_stay_one_line() -> None:
    request = protocol.Request("a" * 32, "replies", 0, "count", 0, b"")
    writer = PartFormat.choose(False, part(request, 0, b"{}"))
    assert writer.part(part(request, 1, b'{\n  "a": 1\n}')) == b'{"a":1}\n'
    assert writer.part(part(request, 2, b"not\njson")) == b'"not\\njson"\n'


def reason(stream: PartStream) -> str | None:
    return None if stream.broken is None else stream.broken.reason


def cancel_records(cluster: FakeKafka) -> list[protocol.Cancel]:
    found = (protocol.Cancel.from_record(m.headers()) for m in cluster.records("requests"))
    return [cancel for cancel in found if cancel is not None]


def request_record(cluster: FakeKafka) -> tuple[bytes | None, list[tuple[str, bytes | None]]]:
    for message in cluster.records("requests"):
        if protocol.Cancel.from_record(message.headers()) is None:
            return message.value(), message.headers() or []
    raise AssertionError("no request record")


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - the catalog is loop state; nothing signals each change
            await asyncio.sleep(0.01)


async def test_openapi_describes_a_streaming_method_by_its_parts(quick: Harness) -> None:
    item = {"type": "object", "properties": {"i": {"type": "integer"}}}
    announce(quick.cluster, Method("count", streaming=True, output=item), Method("sum", output=item))
    await until(lambda: {"count", "sum"} <= set(quick.app.catalog.served))  # type: ignore[attr-defined]
    paths = (await quick.http.get("/openapi.json")).json()["paths"]
    streamed = paths["/rpc/count"]["post"]["responses"]
    assert streamed["200"]["content"]["application/x-ndjson"]["schema"] == item
    assert "text/event-stream" in streamed["200"]["content"]
    assert "Location" in streamed["202"]["headers"]
    whole = paths["/rpc/sum"]["post"]["responses"]["200"]["content"]
    assert list(whole) == ["application/json"]


async def test_a_stream_ended_early_is_not_cancelled_for_a_method_that_reads_no_cancels(
    quick: Harness,
) -> None:
    announce(quick.cluster, Method("count", streaming=True, cancellable=False))
    await until(lambda: "count" in quick.app.catalog.served)  # type: ignore[attr-defined]
    with serve(quick, lambda r: [part(r, 0, b"0")]):
        response = await quick.http.post("/rpc/count", content=b"{}", headers=SSE)
    assert "event: error" in response.text
    assert quick.metric("rpcgw_streamed_replies_total", method="count", outcome="idle") == 1
    assert cancel_records(quick.cluster) == []

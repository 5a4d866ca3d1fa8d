"""The gateway against a real broker and the real worker runtime, over real HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import orjson
import pytest
from confluent_kafka.admin import AdminClient

from gateway.app import create_app
from kafkarpc import protocol

from .harness import REQUEST_PARTITIONS, Gate, Topics, gateway_of, listening, metric, serving, working


async def test_thousand_concurrent_requests_each_get_exactly_their_own_reply(topics: Topics) -> None:
    app = create_app(topics.settings(), topics.kafka_settings())
    # A kept-alive connection the client reuses just as the server's idle timer closes it is reset
    # (httpx.ReadError): clients must let idle connections go before the server does. uvicorn's
    # keep-alive timeout and httpx's keepalive_expiry are both 5 s, so this client expires at 1 s.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=1.0)
    async with working(topics), serving(app) as url, httpx.AsyncClient(base_url=url, limits=limits) as http:
        slots = asyncio.Semaphore(100)

        async def call(i: int) -> tuple[bytes, httpx.Response]:
            body = orjson.dumps({"request": i, "nonce": f"{topics.unique}-{i}"})
            async with slots:
                return body, await http.post(
                    "/rpc/echo", content=body, timeout=30, headers={"content-type": "application/json"}
                )

        results = await asyncio.gather(*(call(i) for i in range(1000)))
        assert all(response.status_code == 200 for _, response in results)
        assert [response.content for _, response in results] == [body for body, _ in results]
        assert len({response.headers["x-correlation-id"] for _, response in results}) == 1000
        assert len(gateway_of(app).client._pending) == 0
        assert metric(app, "rpcgw_requests_total", method="echo", outcome="ok") == 1000
        assert metric(app, "rpcgw_late_replies_total") == 0
        assert metric(app, "rpcgw_unmatched_replies_total") == 0


async def test_slow_worker_gets_504_at_the_deadline_and_the_timeout_is_counted(topics: Topics) -> None:
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics) as worker, serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        started = time.monotonic()
        response = await http.post("/rpc/sleep", content=b'{"seconds": 3}', headers={"prefer": "wait=1"})
        elapsed = time.monotonic() - started
        assert response.status_code == 504
        assert response.headers["content-type"] == protocol.PROBLEM_JSON
        assert response.headers["preference-applied"] == "wait=1"
        assert orjson.loads(response.content)["correlation_id"] == response.headers["x-correlation-id"]
        assert 1.0 <= elapsed < 1.5  # the bound is deadline + 100 ms; slack for a shared box
        exposition = (await http.get("/metrics")).text
        assert 'rpcgw_timeouts_total{method="sleep"} 1.0' in exposition
        assert len(gateway_of(app).client._pending) == 0
        del worker


async def test_worker_error_is_502_problem_json_and_4xx_passes_through(topics: Topics) -> None:
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics), serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        failed = await http.post("/rpc/fail", content=b'{"status": 503, "detail": "db down"}')
        conflict = await http.post("/rpc/fail", content=b'{"status": 409, "detail": "taken"}')
    assert failed.status_code == 502
    assert failed.headers["content-type"] == protocol.PROBLEM_JSON
    problem = orjson.loads(failed.content)
    assert problem["detail"] == "db down"
    assert problem["worker_status"] == 503
    assert problem["correlation_id"] == failed.headers["x-correlation-id"]
    assert conflict.status_code == 409
    assert orjson.loads(conflict.content)["detail"] == "taken"


async def test_oversized_body_is_413_and_nothing_reaches_the_topic(topics: Topics) -> None:
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics), serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        limit = gateway_of(app).body_limit
        too_big = await http.post("/rpc/echo", content=b"x" * (limit + 1))
        two_megabytes = await http.post("/rpc/echo", content=b"x" * 2_000_000)
        assert too_big.status_code == 413
        assert two_megabytes.status_code == 413
        assert too_big.headers["content-type"] == protocol.PROBLEM_JSON
        assert topics.high_watermarks(topics.requests, REQUEST_PARTITIONS) == [0] * REQUEST_PARTITIONS
        at_limit = await http.post("/rpc/echo", content=b"y" * limit)  # header room is enough
        assert at_limit.status_code == 200
        assert len(at_limit.content) == limit


async def test_overload_sheds_with_retry_after_and_nothing_is_produced_for_it(topics: Topics) -> None:
    gate = Gate(expected=5)
    app = create_app(topics.settings(max_pending=5, retry_after=2), topics.kafka_settings())
    async with working(topics, gate.registry), serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        held = [asyncio.create_task(http.post("/rpc/hold", content=b"%d" % i)) for i in range(5)]
        await asyncio.wait_for(gate.arrived.wait(), 30)  # all five registered and produced
        shed = await http.post("/rpc/hold", content=b"shed")
        gate.release.set()
        answered = await asyncio.gather(*held)
    assert shed.status_code == 503
    assert shed.headers["retry-after"] == "2"
    assert shed.headers["content-type"] == protocol.PROBLEM_JSON
    assert [r.content for r in answered] == [b"%d" % i for i in range(5)]
    assert sum(topics.high_watermarks(topics.requests, REQUEST_PARTITIONS)) == 5
    assert metric(app, "rpcgw_shed_requests_total", reason="pending_cap") == 1


@pytest.mark.parametrize("http", ["gateway", "h11", "httptools"])
async def test_a_caller_closing_its_connection_frees_the_request_at_once(topics: Topics, http: str) -> None:
    """Under the gateway's HTTP protocol and, as when an unverified uvicorn falls back, uvicorn's own."""
    gate = Gate(expected=1)
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics, gate.registry), serving(app, http) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            answered = await client.post("/rpc/headers", content=b"{}", headers={"x-tenant": "t1"})
        assert answered.status_code == 200
        assert orjson.loads(answered.content)["extra"] == [["x-tenant", "t1"]]
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /rpc/hold HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nprefer: wait=60\r\n\r\nhi")
        await asyncio.wait_for(gate.arrived.wait(), 30)  # produced, consumed, held by the worker
        pending = gateway_of(app).client._pending
        assert len(pending) == 1
        writer.close()
        await asyncio.wait_for(pending.emptied(), 10)  # long before the 60 s deadline
        gate.release.set()
        del reader
    assert metric(app, "rpcgw_requests_total", method="hold", outcome="disconnected") == 1
    assert metric(app, "rpcgw_timeouts_total", method="hold") == 0


async def test_replicas_get_only_their_own_replies_when_interleaved(topics: Topics) -> None:
    # a and b share reply partition 0 (each drops the other's replies); c reads partition 1 alone.
    apps = {
        name: create_app(topics.settings(reply_partition=partition), topics.kafka_settings())
        for name, partition in (("a", 0), ("b", 0), ("c", 1))
    }
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(working(topics))
        urls = {name: await stack.enter_async_context(serving(app)) for name, app in apps.items()}
        clients = {
            name: await stack.enter_async_context(httpx.AsyncClient(base_url=url))
            for name, url in urls.items()
        }
        names = ["a", "b", "c"] * 100

        async def call(i: int, name: str) -> tuple[bytes, httpx.Response]:
            body = b"%s-%d" % (name.encode(), i)
            return body, await clients[name].post("/rpc/echo", content=body, timeout=30)

        results = await asyncio.gather(*(call(i, name) for i, name in enumerate(names)))
    assert [r.content for _, r in results] == [body for body, _ in results]
    assert all(r.status_code == 200 for _, r in results)
    assert metric(apps["a"], "rpcgw_unmatched_replies_total") == 100  # b's replies, read and dropped
    assert metric(apps["b"], "rpcgw_unmatched_replies_total") == 100
    assert metric(apps["c"], "rpcgw_unmatched_replies_total") == 0
    for app in apps.values():
        assert metric(app, "rpcgw_late_replies_total") == 0


async def test_hostile_headers_never_reach_the_worker(topics: Topics) -> None:
    gate = Gate(expected=1)
    app = create_app(topics.settings(), topics.kafka_settings())
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    async with working(topics, gate.registry), serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        refused = [
            await http.post("/rpc/headers", content=b"x", headers={name: value})
            for name, value in (
                ("rpc-reply-to", "attacker-topic"),
                ("RPC-Correlation-Id", "0" * 32),
                ("rpc-deadline", "99999999999999"),
                ("traceparent", "garbage"),
            )
        ]
        allowed = await http.post(
            "/rpc/headers",
            content=b"x",
            headers={
                "x-tenant": "t1",
                "authorization": "Bearer secret",
                "cookie": "c=1",
                "traceparent": traceparent,
                "x-forwarded-for": "1.2.3.4",
            },
        )
    assert [r.status_code for r in refused] == [400, 400, 400, 400]
    assert allowed.status_code == 200
    assert orjson.loads(allowed.content) == {
        "extra": [["x-tenant", "t1"]],
        "trace": [["traceparent", traceparent]],
    }
    assert len(gate.seen) == 1
    (record,) = topics.records(topics.requests, REQUEST_PARTITIONS)
    names = [name for name, _ in record.headers()]
    assert sorted(names) == sorted(
        [
            protocol.CORRELATION_ID,
            protocol.REPLY_TO,
            protocol.REPLY_PARTITION,
            protocol.METHOD,
            protocol.DEADLINE,
            protocol.CONTENT_TYPE,
            protocol.TRACEPARENT,
            "x-tenant",
        ]
    )


async def test_publish_is_202_after_delivery_and_limited_to_existing_allow_listed_topics(
    topics: Topics,
) -> None:
    app = create_app(topics.settings(), topics.kafka_settings())
    async with serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        published = await http.post(f"/publish/{topics.events}?key=k1", content=b"event-1")
        missing = await http.post(f"/publish/missing-{topics.unique}", content=b"x")
        forbidden = await http.post(f"/publish/{topics.requests}", content=b"x")
    assert published.status_code == 202
    delivery = published.json()
    assert delivery["topic"] == topics.events
    assert delivery["offset"] == 0
    (record,) = topics.records(topics.events, 2)
    assert (record.partition(), record.key(), record.value()) == (delivery["partition"], b"k1", b"event-1")
    assert missing.status_code == 404
    assert forbidden.status_code == 404
    assert topics.high_watermarks(topics.requests, REQUEST_PARTITIONS) == [0] * REQUEST_PARTITIONS
    admin = AdminClient({"bootstrap.servers": topics.kafka.bootstrap_servers})
    assert f"missing-{topics.unique}" not in admin.list_topics(timeout=10).topics


async def test_not_ready_while_the_reply_topic_is_missing_and_it_is_never_created(topics: Topics) -> None:
    absent = f"absent-replies-{topics.unique}"
    app = create_app(topics.settings(reply_topic=absent, startup_timeout=2.0), topics.kafka_settings())
    async with listening(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        readyz = await http.get("/readyz")
        rpc = await http.post("/rpc/echo", content=b"x")
    assert readyz.status_code == 503
    assert rpc.status_code == 503
    admin = AdminClient({"bootstrap.servers": topics.kafka.bootstrap_servers})
    assert absent not in admin.list_topics(timeout=10).topics


async def test_server_timing_splits_a_real_round_trip_into_its_stages(topics: Topics) -> None:
    app = create_app(topics.settings(timing=True), topics.kafka_settings())
    async with working(topics), serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        started = time.perf_counter()
        response = await http.post("/rpc/echo", content=b'{"timed": true}')
        elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200
    durations = {}
    for metric_text in response.headers["server-timing"].split(", "):
        name, _, duration = metric_text.partition(";dur=")
        durations[name] = float(duration)
    stages = ["gateway", "request-hop", "worker-queue", "worker", "reply-hop", "handoff", "respond"]
    assert list(durations) == [*stages, "total"]
    assert all(durations[name] >= 0 for name in stages)
    assert sum(durations[name] for name in stages) == pytest.approx(durations["total"], abs=0.01)
    # Both Kafka hops happened inside the gateway's total, which fits in what the caller saw.
    assert durations["request-hop"] > 0
    assert durations["reply-hop"] > 0
    assert durations["total"] <= elapsed_ms

"""Readiness, Kafka outages, draining, disconnects and cancellation: the map never leaks."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import orjson
import pytest
from confluent_kafka import KafkaError
from starlette.types import Message, Scope

from gateway.app import create_app
from gateway.client import State
from gateway.errors import ClientDisconnectedError
from gateway.health import KafkaHealth, TopicMissingError
from gateway.httpprotocol import CONNECTION_CLOSED
from gateway.settings import GatewaySettings
from kafkarpc import protocol
from kafkarpc.connection import KafkaSettings
from kafkarpc.producer import AsyncProducer
from tests.fakekafka import FakeKafka

from .conftest import Harness, gateway_settings, running
from .fakes import FakeWorker, echo


async def test_not_ready_until_kafka_answers_and_the_consumer_is_positioned(
    settings: GatewaySettings, cluster: FakeKafka
) -> None:
    cluster.down = True
    async with running(settings, cluster, wait=False) as harness:
        readyz = await harness.http.get("/readyz")
        assert readyz.status_code == 503
        assert orjson.loads(readyz.content)["checks"]["reply_consumer"] == "starting"
        assert (await harness.http.get("/healthz")).status_code == 200
        refused = await harness.http.post("/rpc/echo", content=b"x")
        assert refused.status_code == 503
        assert "retry-after" in refused.headers
        cluster.down = False
        await asyncio.wait_for(harness.gateway.client.started.wait(), 10)
        ready = await harness.http.get("/readyz")
        assert ready.status_code == 200
        assert orjson.loads(ready.content)["reply_consumer"] == "positioned"
    assert cluster.records("requests") == []


async def test_missing_topic_keeps_the_gateway_unready_and_creates_nothing(cluster: FakeKafka) -> None:
    settings = gateway_settings(reply_topic="no-such-topic")
    async with running(settings, cluster, wait=False) as harness:
        assert (await harness.http.get("/readyz")).status_code == 503
        assert harness.gateway.client.state is State.STARTING
    assert "no-such-topic" not in cluster.counts


async def test_replies_sent_right_after_ready_are_not_missed(harness: Harness) -> None:
    """The consumer is positioned at the high watermark read before readiness."""
    partition = harness.gateway.listener.partition
    assert partition is not None
    before = [m for m in harness.cluster.records("replies") if m.partition() == partition]
    assert before == []
    with FakeWorker(harness.cluster, {"echo": echo}):
        responses = await asyncio.gather(
            *(harness.http.post("/rpc/echo", content=b"%d" % i) for i in range(20))
        )
    assert [r.content for r in responses] == [b"%d" % i for i in range(20)]


async def test_fixed_reply_partition_is_used_and_checked(cluster: FakeKafka) -> None:
    async with running(gateway_settings(reply_partition=2), cluster) as harness:
        assert harness.gateway.listener.partition == 2
    async with running(gateway_settings(reply_partition=3), cluster, wait=False) as harness:
        await asyncio.gather(
            *[t for t in asyncio.all_tasks() if t.get_name() == "rpcgw-start"], return_exceptions=True
        )
        assert not harness.gateway.client.ready


async def test_all_brokers_down_fails_fast_then_recovers(harness: Harness) -> None:
    harness.cluster.down = True
    harness.cluster.error_event(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    await asyncio.sleep(0)  # error_cb crosses to the loop with call_soon_threadsafe
    assert (await harness.http.get("/readyz")).status_code == 503
    response = await harness.http.post("/rpc/echo", content=b"x")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert harness.cluster.records("requests") == []
    assert [p.purges for p in harness.cluster.producers if p.purges] == [[(True, False)]] * 2
    recovery = harness.gateway.health.recovery
    assert recovery is not None
    harness.cluster.down = False
    await asyncio.wait_for(recovery, 10)
    assert (await harness.http.get("/readyz")).status_code == 200


async def test_hung_brokers_turn_the_gateway_unready_and_drop_queued_records(cluster: FakeKafka) -> None:
    """A hung broker keeps its connections: no "all brokers down", only silence.

    The request queued during the hang is answered 504 once the silence is noticed, and it is
    never written, not even when the brokers come back.
    """
    settings = gateway_settings(broker_silence=0.2, default_timeout=10.0, max_timeout=10.0)
    async with running(settings, cluster) as harness:
        with FakeWorker(cluster, {"echo": echo}):
            cluster.hung = True
            started = asyncio.get_running_loop().time()
            stuck = await harness.http.post("/rpc/echo", content=b"queued in the hang")
            waited = asyncio.get_running_loop().time() - started
            assert stuck.status_code == 504
            assert orjson.loads(stuck.content)["detail"] == (
                "Kafka stopped answering; the request may or may not have been written"
            )
            assert waited < 5.0, "answered long before the 10 s deadline"
            assert (await harness.http.get("/readyz")).status_code == 503
            assert (await harness.http.post("/rpc/echo", content=b"x")).status_code == 503
            assert [p.purges for p in cluster.producers if p.purges] == [[(True, False)]] * 2  # both lanes
            cluster.hung = False
            recovery = harness.gateway.health.recovery
            assert recovery is not None
            await asyncio.wait_for(recovery, 10)
            assert (await harness.http.get("/readyz")).status_code == 200
            after = await harness.http.post("/rpc/echo", content=b"after the hang")
            assert after.status_code == 200
    assert [m.value() for m in cluster.records("requests")] == [b"after the hang"]


async def test_acknowledgements_count_as_answers_while_probes_fail(cluster: FakeKafka) -> None:
    """Busy brokers that are slow to answer a probe still acknowledge records: they are not hung."""
    silence = 0.5  # a CI machine's stall shorter than this must not read as a hang
    settings = gateway_settings(broker_silence=silence)
    async with running(settings, cluster) as harness:
        health = harness.gateway.health
        loop = asyncio.get_running_loop()
        with FakeWorker(cluster, {"echo": echo}):
            cluster.down = True  # every probe fails from now on; records are still acknowledged
            started = loop.time()
            calls = 0
            while loop.time() - started < 4 * silence:
                assert (await harness.http.post("/rpc/echo", content=b"busy")).status_code == 200
                calls += 1
                assert health.reachable
            assert calls > 0
            while health.reachable:  # without records only the failing probes speak: unreachable
                await asyncio.sleep(silence / 4)
                assert loop.time() - started < 4 * silence + 10 * silence
        assert (await harness.http.get("/readyz")).status_code == 503
        cluster.down = False


async def test_fatal_client_error_fails_liveness(harness: Harness) -> None:
    harness.gateway.health.on_error(KafkaError(KafkaError._FATAL, "producer fenced", fatal=True))
    await asyncio.sleep(0)  # error_cb crosses to the loop with call_soon_threadsafe
    assert (await harness.http.get("/healthz")).status_code == 503
    assert (await harness.http.get("/readyz")).status_code == 503


async def test_drain_refuses_new_requests_and_lets_pending_ones_finish(harness: Harness) -> None:
    release = threading.Event()

    def held(request: protocol.Request) -> protocol.Reply:
        release.wait(10)
        return echo(request)

    with FakeWorker(harness.cluster, {"held": held}) as worker:
        pending = asyncio.create_task(harness.http.post("/rpc/held", content=b"in flight"))
        assert await asyncio.to_thread(worker.wait_requests, 1)
        harness.gateway.client.drain()
        assert (await harness.http.get("/readyz")).status_code == 503
        refused = await harness.http.post("/rpc/held", content=b"new")
        release.set()
        finished = await pending
    assert refused.status_code == 503
    assert finished.status_code == 200
    assert finished.content == b"in flight"
    assert len(worker.requests) == 1


async def test_stop_waits_for_pending_replies_then_closes_clients(
    settings: GatewaySettings, cluster: FakeKafka
) -> None:
    release = threading.Event()

    def held(request: protocol.Request) -> protocol.Reply:
        release.wait(10)
        return echo(request)

    async with running(settings, cluster) as harness:
        client = harness.gateway.client
        with FakeWorker(cluster, {"held": held}) as worker:
            call = asyncio.create_task(client.call(harness.gateway.ids.new(), "held", b"x", 5.0))
            assert await asyncio.to_thread(worker.wait_requests, 1)
            stopping = asyncio.create_task(client.stop(drain_timeout=5.0, flush_timeout=1.0))
            await asyncio.sleep(0)
            assert client.state.value == "draining"
            release.set()
            reply = await call
            await stopping
    assert reply.body == b"x"
    assert client.state is State.STOPPED
    assert all(consumer.closed for consumer in cluster.consumers if consumer.config)


async def test_cancelled_call_leaves_nothing_pending(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"slow": lambda request: None}) as worker:
        call = asyncio.create_task(harness.gateway.client.call(harness.gateway.ids.new(), "slow", b"x", 5.0))
        assert await asyncio.to_thread(worker.wait_requests, 1)
        assert len(harness.gateway.client._pending) == 1
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
    assert call.cancelled()
    assert len(harness.gateway.client._pending) == 0


@pytest.mark.parametrize("signal", ["receive", "extension"])
async def test_client_disconnect_abandons_the_request(harness: Harness, signal: str) -> None:
    """Raw ASGI: the caller sends its body, then disconnects while the worker is busy.

    Under any ASGI server the disconnect arrives through ``receive()``; under the gateway's
    own server through the connection-closed extension, with ``receive()`` never answering.
    """
    disconnect = asyncio.Event()
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent: list[Message] = []
    messages = [{"type": "http.request", "body": b"x", "more_body": False}]

    async def receive() -> Message:
        if messages:
            return messages.pop()
        await disconnect.wait()
        if signal == "extension":
            await asyncio.Future()  # the extension path must not depend on receive()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rpc/slow",
        "raw_path": b"/rpc/slow",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"gateway")],
        "client": ("127.0.0.1", 1),
        "server": ("gateway", 80),
        "state": {},
    }
    if signal == "extension":
        scope["extensions"] = {CONNECTION_CLOSED: {"future": closed}}
    with FakeWorker(harness.cluster, {"slow": lambda request: None}) as worker:
        call = asyncio.create_task(harness.app(scope, receive, send))
        assert await asyncio.to_thread(worker.wait_requests, 1)
        assert len(harness.gateway.client._pending) == 1
        disconnect.set()
        closed.set_result(None)
        await asyncio.wait_for(call, 5)
    assert len(harness.gateway.client._pending) == 0
    assert sent[0]["status"] == 499
    assert harness.metric("rpcgw_requests_total", method="slow", outcome="disconnected") == 1


class WatchedFuture(asyncio.Future[None]):
    """A connection's closed future that counts the callbacks registered on it."""

    def __init__(self) -> None:
        super().__init__(loop=asyncio.get_running_loop())
        self.callbacks = 0

    def add_done_callback(self, fn: Any, *, context: Any = None) -> None:
        self.callbacks += 1
        super().add_done_callback(fn, context=context)

    def remove_done_callback(self, fn: Any) -> int:
        removed = super().remove_done_callback(fn)
        self.callbacks -= removed
        return removed


async def test_keep_alive_calls_leave_no_callback_on_the_connection(harness: Harness) -> None:
    closed = WatchedFuture()
    with FakeWorker(harness.cluster, {"echo": echo}):
        for i in range(3):
            reply = await harness.gateway.client.call(
                harness.gateway.ids.new(), "echo", b"%d" % i, 5.0, disconnected=closed
            )
            assert reply.body == b"%d" % i
            assert closed.callbacks == 0
    closed.set_result(None)  # the connection closing later fails nothing
    assert len(harness.gateway.client._pending) == 0


async def test_a_caller_already_gone_is_not_sent(harness: Harness) -> None:
    closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    closed.set_result(None)
    with pytest.raises(ClientDisconnectedError):
        await harness.gateway.client.call(harness.gateway.ids.new(), "echo", b"x", 5.0, disconnected=closed)
    assert harness.cluster.records("requests") == []
    assert len(harness.gateway.client._pending) == 0


async def test_health_endpoints_answer_without_kafka_calls(harness: Harness) -> None:
    assert (await harness.http.get("/healthz")).json() == {"status": "ok"}
    ready = (await harness.http.get("/readyz")).json()
    assert ready == {
        "status": "ready",
        "state": "running",
        "kafka": "reachable",
        "reply_consumer": "positioned",
        "catalog": "read",
    }


async def test_many_concurrent_calls_each_get_their_own_reply(harness: Harness) -> None:
    with FakeWorker(harness.cluster, {"echo": echo}):
        bodies = [b"request-%d" % i for i in range(300)]
        slots = asyncio.Semaphore(40)  # below the fixture's max_pending of 50

        async def call(body: bytes) -> httpx.Response:
            async with slots:
                return await harness.http.post("/rpc/echo", content=body)

        responses = await asyncio.gather(*(call(b) for b in bodies))
    assert [r.content for r in responses] == bodies
    ids = {r.headers["x-correlation-id"] for r in responses}
    assert len(ids) == len(bodies)
    assert len(harness.gateway.client._pending) == 0


async def test_an_outage_reported_while_a_probe_is_answered_keeps_the_gateway_unreachable(
    harness: Harness,
) -> None:
    """A probe answered before an outage says nothing about after it: probe again."""
    cluster, health = harness.cluster, harness.gateway.health
    last_question = "metadata replies"  # a probe asks about the request topic, then the reply topic
    cluster.hold(last_question)
    answered = cluster.calls[last_question]
    cluster.error_event(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    await cluster.wait_for(lambda: cluster.calls[last_question] > answered)  # the probe has its answers
    cluster.down = True
    cluster.error_event(KafkaError(KafkaError._ALL_BROKERS_DOWN))  # ... and then the brokers went again
    await asyncio.sleep(0)  # error_cb crosses to the loop with call_soon_threadsafe
    first_question = cluster.calls["metadata requests"]
    cluster.release(last_question)
    # The stale answer is not believed: another probe runs, meets the outage and keeps retrying.
    await cluster.wait_for(lambda: cluster.calls["metadata requests"] >= first_question + 2)
    assert not health.reachable
    assert (await harness.http.post("/rpc/echo", content=b"x")).status_code == 503
    cluster.down = False
    assert health.recovery is not None
    await asyncio.wait_for(health.recovery, 10)
    assert health.reachable


async def test_shutdown_during_start_up_closes_the_reply_consumer_after_its_last_use(
    settings: GatewaySettings, cluster: FakeKafka
) -> None:
    cluster.hold("watermarks")
    app = create_app(settings, KafkaSettings(bootstrap_servers="fake:9092"), cluster)
    lifespan = app.router.lifespan_context(app)
    await lifespan.__aenter__()
    await cluster.wait_for(lambda: cluster.calls["watermarks"] > 0)  # start-up waits for the broker
    stopping = asyncio.create_task(lifespan.__aexit__(None, None, None))
    client = app.state.gateway.client
    async with asyncio.timeout(10):
        while client.state is not State.STOPPED:  # noqa: ASYNC110 - no event marks the stop reaching Kafka
            await asyncio.sleep(0)
    cluster.release("watermarks")  # the watermark request answers late, after the shutdown began
    await asyncio.wait_for(stopping, 10)
    consumers = [consumer for consumer in cluster.consumers if consumer.config]
    assert consumers
    assert all(consumer.closed for consumer in consumers)
    assert [consumer.used_after_close for consumer in consumers] == [[] for _ in consumers]
    assert not [thread for thread in threading.enumerate() if thread.name == "rpcgw-replies"]


async def test_a_topic_the_acls_refuse_is_reported_as_refused_not_as_missing(cluster: FakeKafka) -> None:
    health = KafkaHealth("requests", "replies", probe_timeout=1.0, silence=2.0)
    health.attach(AsyncProducer(cluster, {}))
    cluster.forbidden.add("replies")
    with pytest.raises(TopicMissingError, match=r"ACLs refuse .* 'replies' .*TOPIC_AUTHORIZATION_FAILED"):
        health.probe()
    absent = KafkaHealth("requests", "absent", probe_timeout=1.0, silence=2.0)
    absent.attach(AsyncProducer(cluster, {}))
    with pytest.raises(TopicMissingError, match="'absent' does not exist"):
        absent.probe()

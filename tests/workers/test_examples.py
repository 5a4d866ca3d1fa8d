"""The example handlers through the dispatcher: the orders REST service, typed end to end."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson

from kafkarpc.protocol import Reply, Request
from tests.fakekafka import FakeKafka, record
from tests.workers.conftest import cancel, request, send, serving, settings
from workers.dispatcher import Dispatcher
from workers.examples import registry
from workers.metrics import WorkerMetrics


async def answer(method: str, body: bytes = b"", **fields: Any) -> Reply:
    base = request(method, body)
    req = Request(**{**{f: getattr(base, f) for f in base.__slots__}, **fields})
    dispatcher = Dispatcher(registry, settings(), WorkerMetrics(), ThreadPoolExecutor(1))
    outcome = await dispatcher.dispatch(record("requests", 0, 1, req.body, headers=req.headers()))
    assert outcome.reply is not None
    return outcome.reply


async def test_echo_returns_body_and_content_type() -> None:
    reply = await answer("echo", b'{"a":1}')
    assert (reply.body, reply.content_type) == (b'{"a":1}', "application/json")


async def test_sleep_and_fail_validate_their_bodies() -> None:
    assert orjson.loads((await answer("sleep", b'{"seconds": 0}')).body) == {"slept": 0}
    assert (await answer("sleep", b'{"seconds": -1}')).status == 422
    failed = await answer("fail", b'{"status": 409, "detail": "taken"}')
    assert (failed.status, orjson.loads(failed.body)["detail"]) == (409, "taken")


async def test_an_order_is_created_once_per_idempotency_key_read_back_and_listed() -> None:
    body = orjson.dumps({"customer_id": "grace", "items": [{"sku": "a", "quantity": 2}], "total": 9.5})
    key = [("idempotency-key", b"k1")]
    first = await answer("orders.create", body, route="POST /orders", extra=key)
    again = await answer("orders.create", body, route="POST /orders", extra=key)
    assert first.status == 201
    order = orjson.loads(first.body)
    assert first.response_headers == {"location": f"/orders/{order['order_id']}"}
    assert again.body == first.body  # a retry returns the first order
    found = await answer("orders.get", path_params={"order_id": order["order_id"]})
    assert orjson.loads(found.body) == order
    listed = await answer("orders.list", query="customer=grace&limit=5")
    assert orjson.loads(listed.body) == [order]
    assert (await answer("orders.get", path_params={"order_id": "missing"})).status == 404


async def test_an_invalid_order_is_422_with_each_fields_error() -> None:
    reply = await answer("orders.create", b'{"customer_id": "", "items": [], "total": -1}')
    assert reply.status == 422
    locations = [error["loc"] for error in orjson.loads(reply.body)["errors"]]
    assert locations == [["body", "customer_id"], ["body", "items"], ["body", "total"]]
    limit = await answer("orders.list", query="limit=0")
    assert [e["loc"] for e in orjson.loads(limit.body)["errors"]] == [["query", "limit"]]


async def test_report_summarises_its_steps() -> None:
    reply = await answer("report", query="steps=2&step=0")
    assert orjson.loads(reply.body)["steps"] == 2
    assert (await answer("report", query="steps=0")).status == 422


async def test_report_stops_at_a_cancel(broker: FakeKafka) -> None:
    async with serving(broker, registry) as h:
        req = request("report", deadline_in=60)  # 30 steps of 1 s unless cancelled
        send(broker, req, partition=0)
        await broker.wait_for(lambda: h.metric("rpcworker_in_flight") == 1)
        cancel(broker, req, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2, within=5)
        assert h.replies() == {}
        assert h.metric("rpcworker_handled_total", method="report", outcome="cancelled") == 1


async def test_count_streams_n_parts_then_ends(broker: FakeKafka) -> None:
    async with serving(broker, registry) as h:
        req, invalid = request("count", b'{"n": 3, "interval": 0}'), request("count", b'{"n": -1}')
        send(broker, req, partition=0)
        send(broker, invalid, partition=0)
        await broker.wait_for(lambda: h.committed(0) == 2)
        replies = [Reply.from_record(m.value(), m.headers()) for m in h.stream(req.correlation_id)]
        assert [orjson.loads(r.body) for r in replies[:3]] == [{"i": i, "n": 3} for i in range(3)]
        assert [(r.sequence, r.final) for r in replies] == [(0, False), (1, False), (2, False), (3, True)]
        assert h.replies()[invalid.correlation_id].status == 422

"""The example handlers, called directly."""

from __future__ import annotations

import orjson
import pytest

from tests.workers.conftest import request
from workers.errors import HandlerError
from workers.examples import create_order, echo, fail, get_order, sleep


async def test_echo_returns_body_and_content_type() -> None:
    response = await echo(request("echo", b'{"a":1}'))
    assert (response.body, response.content_type) == (b'{"a":1}', "application/json")


async def test_sleep_validates_its_body() -> None:
    assert await sleep(request("sleep", b'{"seconds": 0}')) == {"slept": 0}
    with pytest.raises(HandlerError) as raised:
        await sleep(request("sleep", b'{"seconds": -1}'))
    assert raised.value.status == 422


async def test_fail_raises_the_requested_error() -> None:
    with pytest.raises(HandlerError) as raised:
        await fail(request("fail", b'{"status": 409, "detail": "taken"}'))
    assert (raised.value.status, raised.value.detail) == (409, "taken")


def test_orders_are_created_once_per_idempotency_key_and_read_back() -> None:
    body = orjson.dumps({"customer_id": "c1", "items": [{"sku": "a"}], "total": 9.5})
    first = create_order(request("orders.create", body, extra=[("Idempotency-Key", b"k1")]))
    again = create_order(request("orders.create", body, extra=[("Idempotency-Key", b"k1")]))
    assert first.status == 201
    assert first.body == again.body  # a retry returns the first order
    order = orjson.loads(first.body)
    found = get_order(request("orders.get", orjson.dumps({"order_id": order["order_id"]})))
    assert found == order
    with pytest.raises(HandlerError) as raised:
        get_order(request("orders.get", b'{"order_id": "missing"}'))
    assert raised.value.status == 404


def test_a_redelivered_create_returns_the_same_order() -> None:
    body = orjson.dumps({"customer_id": "c2", "items": [{"sku": "b"}], "total": 1})
    req = request("orders.create", body)
    assert create_order(req).body == create_order(req).body  # same correlation id

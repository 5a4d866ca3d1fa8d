"""Typed handlers: parameters bound from path, query and body, results through the return annotation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, Field

from kafkarpc.catalog import Method
from kafkarpc.clients import Message
from kafkarpc.protocol import PROBLEM_JSON, Request
from tests.fakekafka import record
from tests.workers.conftest import request, settings
from workers import HandlerRegistry, Identity, ResponseHeaders
from workers.dispatcher import Dispatcher, Outcome
from workers.errors import RegistryError
from workers.metrics import WorkerMetrics


class NewOrder(BaseModel):
    customer: str = Field(min_length=1)
    total: float = Field(ge=0)


class Order(NewOrder):
    order_id: int


def orders() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("orders.create", routes=["POST /orders"], status_code=201)
    async def create(order: NewOrder, headers: ResponseHeaders) -> Order:
        """Place an order.

        The order gets the next id.
        """
        headers["Location"] = "/orders/7"
        return Order(order_id=7, **order.model_dump())

    @registry.handler("orders.get", routes=["GET /orders/{order_id}"])
    def get(order_id: int, verbose: bool = False) -> dict[str, Any]:
        return {"order_id": order_id, "verbose": verbose}

    @registry.handler("orders.list", routes=["GET /orders"])
    async def listing(customer: list[str], limit: int = 10) -> list[str]:
        return customer[:limit]

    return registry


async def call(registry: HandlerRegistry, req: Request) -> Outcome:
    dispatcher = Dispatcher(registry, settings(), WorkerMetrics(), ThreadPoolExecutor(1))
    message: Message = record("requests", 0, 1, req.body, headers=req.headers())
    return await dispatcher.dispatch(message)


def routed(method: str, body: bytes = b"", **fields: Any) -> Request:
    base = request(method, body)
    return Request(**{**{f: getattr(base, f) for f in base.__slots__}, **fields})


async def test_a_body_model_is_validated_and_the_result_serialised_with_status_and_headers() -> None:
    outcome = await call(orders(), routed("orders.create", b'{"customer": "ada", "total": 12.5}'))
    assert outcome.reply is not None
    assert outcome.reply.status == 201
    assert orjson.loads(outcome.reply.body) == {"customer": "ada", "total": 12.5, "order_id": 7}
    assert outcome.reply.content_type == "application/json"
    assert outcome.reply.response_headers == {"location": "/orders/7"}


async def test_invalid_input_is_422_with_pydantics_errors_and_their_locations() -> None:
    outcome = await call(orders(), routed("orders.create", b'{"customer": "", "total": -1, "password": "x"}'))
    assert outcome.reply is not None
    assert outcome.reply.status == 422
    assert outcome.reply.content_type == PROBLEM_JSON
    problem = orjson.loads(outcome.reply.body)
    assert [error["loc"] for error in problem["errors"]] == [["body", "customer"], ["body", "total"]]
    assert all(set(error) == {"loc", "msg", "type"} for error in problem["errors"])  # no echoed input
    assert problem["detail"].startswith("body.customer: ")


async def test_path_and_query_parameters_are_converted_to_their_annotations() -> None:
    req = routed(
        "orders.get", route="GET /orders/{order_id}", path_params={"order_id": "42"}, query="verbose=1"
    )
    outcome = await call(orders(), req)
    assert outcome.reply is not None
    assert orjson.loads(outcome.reply.body) == {"order_id": 42, "verbose": True}
    bad = await call(orders(), routed("orders.get", path_params={"order_id": "forty-two"}))
    assert bad.reply is not None
    assert [e["loc"] for e in orjson.loads(bad.reply.body)["errors"]] == [["path", "order_id"]]


async def test_through_rpc_a_path_parameter_may_come_from_the_query_string() -> None:
    outcome = await call(orders(), routed("orders.get", query="order_id=5"))
    assert outcome.reply is not None
    assert orjson.loads(outcome.reply.body)["order_id"] == 5


async def test_a_list_parameter_collects_repeated_query_values() -> None:
    outcome = await call(orders(), routed("orders.list", query="customer=a&customer=b&limit=1"))
    assert outcome.reply is not None
    assert orjson.loads(outcome.reply.body) == ["a"]
    missing = await call(orders(), routed("orders.list"))
    assert missing.reply is not None
    assert missing.reply.status == 422


def test_the_catalog_description_comes_from_the_docstring_and_the_annotations() -> None:
    registration = orders().get("orders.create")
    assert registration is not None
    method = registration.describe()
    assert method.routes == ("POST /orders",)
    assert (method.summary, method.description) == ("Place an order.", "The order gets the next id.")
    assert method.status == 201
    assert isinstance(method.body, dict)
    assert method.body["required"] == ["customer", "total"]
    assert isinstance(method.output, dict)
    assert "order_id" in method.output["properties"]
    assert Method.from_document(method.document()) == method


def test_a_raw_handler_stays_untyped() -> None:
    registry = HandlerRegistry()
    registry.add("raw", lambda req: req.body)
    registration = registry.get("raw")
    assert registration is not None
    assert not registration.endpoint.typed
    assert registration.describe().body is None


@pytest.mark.parametrize(
    ("routes", "message"),
    [
        (["FETCH /x"], "verb"),
        (["GET x"], "must start with /"),
        (["GET /a/{id}/{id}"], "twice"),
        (["GET /items/{missing}"], "not handler parameters"),
        (["GET /orders"], "already 'orders.list'"),
    ],
)
def test_bad_or_taken_routes_are_refused_at_registration(routes: list[str], message: str) -> None:
    registry = orders()
    with pytest.raises(RegistryError, match=message):
        registry.add("other", lambda req: b"", routes=routes)


async def test_a_handler_can_take_the_authenticated_caller_and_refuses_anonymous_calls() -> None:
    registry = HandlerRegistry()

    @registry.handler("whoami")
    def whoami(caller: Identity) -> dict[str, Any]:
        return {"sub": caller.subject, "scopes": list(caller.scopes)}

    @registry.handler("maybe")
    def maybe(caller: Identity | None = None) -> str:
        return "anonymous" if caller is None else caller.subject

    alice = Identity("alice", ("rpc",))
    known = await call(registry, routed("whoami", caller=alice))
    assert known.reply is not None
    assert orjson.loads(known.reply.body) == {"sub": "alice", "scopes": ["rpc"]}
    anonymous = await call(registry, routed("whoami"))
    assert anonymous.reply is not None
    assert anonymous.reply.status == 401
    optional = [await call(registry, routed("maybe", caller=c)) for c in (alice, None)]
    assert [outcome.reply.body for outcome in optional if outcome.reply] == [b"alice", b"anonymous"]

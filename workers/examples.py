"""Example handlers for demos and tests: ``workers.examples:registry``.

    echo           the body back with its content type (the raw, untyped form)
    sleep          waits ``seconds``, then answers (provokes gateway timeouts)
    fail           answers with the requested error (default 500)
    orders.create  POST /orders             an order; 201, Location: /orders/{order_id}
    orders.get     GET /orders/{order_id}   the order, or 404
    orders.list    GET /orders?customer=…   the orders, newest last, at most ``limit``
    whoami         GET /me                  who the gateway says is calling (``rpc-caller``)
    report         POST /reports            30 s of (simulated) work, then a summary; cancellable
    count          POST /count              a streamed reply: ``n`` parts, ``interval`` s apart

The orders are a small REST service, typed end to end: pydantic models declare what comes in
and goes out, the worker validates (422 with the field errors) and serialises, and the
gateway's /docs shows and calls them. Orders live in this process's memory, so with several
workers a read finds only orders the same process created; a real service keeps them in a
shared database. ``orders.create`` is idempotent: a redelivered request (same correlation id)
or a retry with the same ``idempotency-key`` header returns the order created the first time.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from workers import HandlerError, HandlerRegistry, Identity, Request, Response, ResponseHeaders

registry = HandlerRegistry()

# Bound for the sleep handler, so a demo cannot park a handler slot for hours.
MAX_SLEEP_SECONDS = 300.0
# Caller header (forwarded by the gateway) that makes retries of orders.create idempotent.
IDEMPOTENCY_KEY = "idempotency-key"
# Bounds for count: a demo stream is finite, and its parts never more than 10 s apart.
MAX_COUNT = 100_000
MAX_INTERVAL_SECONDS = 10.0


class SleepRequest(BaseModel):
    """Body of ``sleep``."""

    seconds: float = Field(ge=0, le=MAX_SLEEP_SECONDS)


class FailRequest(BaseModel):
    """Body of ``fail``."""

    status: int = Field(default=500, ge=400, le=599)
    detail: str = "failure requested by the caller"


class Item(BaseModel):
    """One line of an order."""

    sku: str = Field(min_length=1, max_length=64)
    quantity: int = Field(default=1, ge=1, le=1000)


class NewOrder(BaseModel):
    """An order to place."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"customer_id": "ada", "items": [{"sku": "kafka-mug", "quantity": 2}], "total": 24.0}
            ]
        }
    )

    customer_id: str = Field(min_length=1, max_length=100)
    items: list[Item] = Field(min_length=1, max_length=100)
    total: float = Field(ge=0)


class Order(NewOrder):
    """A placed order."""

    order_id: str
    status: str = "created"


@registry.handler("echo")
async def echo(request: Request) -> Response:
    """The request body, unchanged."""
    return Response(request.body, 200, request.content_type)


@registry.handler("sleep")
async def sleep(body: SleepRequest) -> dict[str, float]:
    """Wait ``seconds``, then answer; the runtime cancels it at the deadline."""
    await asyncio.sleep(body.seconds)
    return {"slept": body.seconds}


@registry.handler("fail")
async def fail(body: FailRequest) -> None:
    """Always answers with the requested error."""
    raise HandlerError(body.status, body.detail)


class OrderBook:
    """Orders in memory, safe for the handler thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, Order] = {}
        self._by_key: dict[str, str] = {}

    def create(self, key: str, order: NewOrder) -> Order:
        """Create the order once per idempotency key; repeats return the first one."""
        with self._lock:
            if key in self._by_key:
                return self._orders[self._by_key[key]]
            placed = Order(order_id=str(uuid.uuid4()), **order.model_dump())
            self._orders[placed.order_id] = placed
            self._by_key[key] = placed.order_id
            return placed

    def get(self, order_id: str) -> Order | None:
        """The order, or None."""
        with self._lock:
            return self._orders.get(order_id)

    def of(self, customer_id: str | None) -> list[Order]:
        """Every order, or a customer's, in creation order."""
        with self._lock:
            return [o for o in self._orders.values() if customer_id in (None, o.customer_id)]


orders = OrderBook()


@registry.handler("orders.create", routes=["POST /orders"], status_code=201)
def create_order(order: NewOrder, request: Request, headers: ResponseHeaders) -> Order:
    """Place an order.

    Idempotent: a retry with the same Idempotency-Key header (or a redelivery) returns the
    order placed the first time. The answer's Location names the new order.
    """
    key = next((v.decode() for k, v in request.extra if k.lower() == IDEMPOTENCY_KEY), request.correlation_id)
    placed = orders.create(key, order)
    headers["location"] = f"/orders/{placed.order_id}"
    return placed


@registry.handler("orders.get", routes=["GET /orders/{order_id}"])
def get_order(order_id: str) -> Order:
    """One order."""
    found = orders.get(order_id)
    if found is None:
        raise HandlerError(404, f"no order {order_id!r}")
    return found


@registry.handler("orders.list", routes=["GET /orders"])
def list_orders(
    customer: str | None = None, limit: Annotated[int, Field(ge=1, le=1000)] = 100
) -> list[Order]:
    """Orders, oldest first; ``customer`` keeps one customer's."""
    return orders.of(customer)[:limit]


class Caller(BaseModel):
    """Who is calling, as the gateway authenticated them."""

    subject: str | None = Field(description="token subject or API key subject; null without authentication")
    scopes: list[str] = Field(default_factory=list)
    claims: dict[str, object] = Field(default_factory=dict)


@registry.handler("whoami", routes=["GET /me"])
def whoami(caller: Identity | None = None) -> Caller:
    """Who the gateway says is calling.

    With GATEWAY_AUTH on, the token's subject, scopes and forwarded claims; without it, null.
    """
    if caller is None:
        return Caller(subject=None)
    return Caller(subject=caller.subject, scopes=list(caller.scopes), claims=caller.claims)


class Report(BaseModel):
    """What ``report`` found."""

    steps: int
    seconds: float = Field(description="time the work took")


@registry.handler("report", routes=["POST /reports"])
async def report(
    steps: Annotated[int, Field(ge=1, le=300)] = 30, step: Annotated[float, Field(ge=0, le=10)] = 1.0
) -> Report:
    """Work for ``steps`` x ``step`` seconds (30 s by default), then summarise.

    Long enough to be left: when the caller disconnects or times out, the gateway sends a cancel
    and the work stops at its next await.
    """
    began = time.monotonic()
    for _ in range(steps):
        await asyncio.sleep(step)  # stands for a query or a call to another service
    return Report(steps=steps, seconds=round(time.monotonic() - began, 3))


class CountRequest(BaseModel):
    """Body of ``count``."""

    n: int = Field(default=10, ge=0, le=MAX_COUNT)
    interval: float = Field(default=0.5, ge=0, le=MAX_INTERVAL_SECONDS)


class Tick(BaseModel):
    """One part of ``count``."""

    i: int
    n: int


@registry.handler("count", routes=["POST /count"])
async def count(body: CountRequest) -> AsyncIterator[Tick]:
    """Count from 0 to n - 1, one part each, ``interval`` seconds apart.

    A streamed reply: newline-delimited JSON, or Server-Sent Events for a caller that accepts
    text/event-stream.
    """
    for i in range(body.n):
        if i:
            await asyncio.sleep(body.interval)
        yield Tick(i=i, n=body.n)

"""Example handlers for demos and tests: ``workers.examples:registry``.

    echo           returns the body with its content type
    sleep          {"seconds": x}: waits, then answers (provokes gateway timeouts)
    fail           {"status": 4xx|5xx, "detail": "..."}: answers with that error (default 500)
    orders.create  {"customer_id", "items", "total"}: stores an order, answers 201 with it
    orders.get     {"order_id"}: the stored order, or 404

Orders live in this process's memory, so with several workers ``orders.get`` finds only
orders created by the same process; a real service keeps them in a shared database.
``orders.create`` is idempotent: a redelivered request (same correlation id) or a retry with
the same ``idempotency-key`` header returns the order created the first time.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, Field, ValidationError

from workers import HandlerError, HandlerRegistry, Request, Response

registry = HandlerRegistry()
M = TypeVar("M", bound=BaseModel)

# Bound for the sleep handler, so a demo cannot park a handler slot for hours.
MAX_SLEEP_SECONDS = 300.0
# Caller header (forwarded by the gateway) that makes retries of orders.create idempotent.
IDEMPOTENCY_KEY = "idempotency-key"


class SleepRequest(BaseModel):
    """Body of ``sleep``."""

    seconds: float = Field(ge=0, le=MAX_SLEEP_SECONDS)


class FailRequest(BaseModel):
    """Body of ``fail``."""

    status: int = Field(default=500, ge=400, le=599)
    detail: str = "failure requested by the caller"


class OrderCreate(BaseModel):
    """Body of ``orders.create``."""

    customer_id: str = Field(min_length=1, max_length=100)
    items: list[dict[str, Any]] = Field(min_length=1, max_length=100)
    total: float = Field(ge=0)


class OrderGet(BaseModel):
    """Body of ``orders.get``."""

    order_id: str


def parse(model: type[M], request: Request) -> M:
    """Validate a JSON body; a bad one is the caller's fault (422)."""
    try:
        return model.model_validate_json(request.body or b"{}")
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
        raise HandlerError(422, errors) from None


@registry.handler("echo")
async def echo(request: Request) -> Response:
    """The request body, unchanged."""
    return Response(request.body, 200, request.content_type)


@registry.handler("sleep")
async def sleep(request: Request) -> dict[str, float]:
    """Wait ``seconds``, then answer; the runtime cancels it at the deadline."""
    seconds = parse(SleepRequest, request).seconds
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@registry.handler("fail")
async def fail(request: Request) -> None:
    """Always answers with the requested error."""
    body = parse(FailRequest, request)
    raise HandlerError(body.status, body.detail)


class OrderBook:
    """Orders in memory, safe for the handler thread pool."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, str] = {}

    def create(self, key: str, order: OrderCreate) -> dict[str, Any]:
        """Create the order once per idempotency key; repeats return the first one."""
        with self._lock:
            if key in self._by_key:
                return self._orders[self._by_key[key]]
            order_id = str(uuid.uuid4())
            stored = {"order_id": order_id, "status": "created", **order.model_dump()}
            self._orders[order_id] = stored
            self._by_key[key] = order_id
            return stored

    def get(self, order_id: str) -> dict[str, Any] | None:
        """The order, or None."""
        with self._lock:
            return self._orders.get(order_id)


orders = OrderBook()


@registry.handler("orders.create")
def create_order(request: Request) -> Response:
    """Store an order (a sync handler: it runs in the thread pool)."""
    key = next((v.decode() for k, v in request.extra if k.lower() == IDEMPOTENCY_KEY), request.correlation_id)
    stored = orders.create(key, parse(OrderCreate, request))
    return Response(orjson.dumps(stored), 201)


@registry.handler("orders.get")
def get_order(request: Request) -> dict[str, Any]:
    """The stored order, or 404."""
    order_id = parse(OrderGet, request).order_id
    found = orders.get(order_id)
    if found is None:
        raise HandlerError(404, f"no order {order_id!r}")
    return found

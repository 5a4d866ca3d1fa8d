"""The method catalog in the gateway: 404 for methods nobody serves, routes, hostile records, expiry."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable

import jsonschema
import orjson
import pytest
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from gateway.settings import GatewaySettings
from kafkarpc import protocol
from kafkarpc.catalog import Entry, Method
from tests.fakekafka import FakeKafka
from tests.specs import asyncapi_schema

from .conftest import CATALOG, Harness, running
from .fakes import FakeWorker, echo

THINGS = Method(
    method="things.get",
    routes=("GET /things/{thing_id}", "POST /things"),
    summary="A thing",
    path={"type": "object", "properties": {"thing_id": {"type": "integer"}}, "required": ["thing_id"]},
)


def announce(cluster: FakeKafka, *methods: Method, instance: str = "i1", age: float = 0.0) -> Entry:
    entry = Entry("things", instance, int((time.time() - age) * 1000), methods)
    cluster.append(CATALOG, entry.value(), key=entry.key)
    return entry


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - the catalog is loop state; nothing signals each change
            await asyncio.sleep(0.01)


@pytest.fixture
async def strict(cluster: FakeKafka) -> AsyncIterator[Harness]:
    async with running(GatewaySettings(default_timeout=2.0, catalog_stale_after=1.0), cluster) as h:
        yield h


async def test_a_method_nobody_announces_is_404_at_once(strict: Harness) -> None:
    response = await strict.http.post("/rpc/nobody.home", content=b"x")
    assert response.status_code == 404
    assert "no worker serves method 'nobody.home'" in response.json()["detail"]
    assert strict.cluster.records("requests") == []
    assert strict.metric("rpcgw_requests_total", method="nobody.home", outcome="unknown_method") == 1
    # Names nobody serves get no alerted series at 0 (those are for methods being called).
    assert (
        strict.gateway.metrics.registry.get_sample_value("rpcgw_timeouts_total", {"method": "nobody.home"})
        is None
    )


async def test_an_announced_method_is_served_by_rpc_and_by_its_routes(strict: Harness) -> None:
    announce(strict.cluster, THINGS)
    catalog = strict.gateway.catalog
    assert catalog is not None
    await until(lambda: catalog.serves("things.get"))
    with FakeWorker(strict.cluster, {"things.get": echo}) as worker:
        by_rpc = await strict.http.post("/rpc/things.get?thing_id=1", content=b"a")
        by_get = await strict.http.get("/things/7%2F8?verbose=1")
        by_post = await strict.http.post("/things", content=b"b")
    assert [r.status_code for r in (by_rpc, by_get, by_post)] == [200, 200, 200]
    rpc, get, post = worker.requests
    assert (rpc.route, rpc.path_params, rpc.query) == ("", {}, "thing_id=1")
    assert (get.route, get.path_params, get.query) == (
        "GET /things/{thing_id}",
        {"thing_id": "7/8"},
        "verbose=1",
    )
    assert (post.route, post.method, post.body) == ("POST /things", "things.get", b"b")


async def test_a_routes_path_with_another_verb_is_405_with_allow_and_an_unknown_path_404(
    strict: Harness,
) -> None:
    announce(strict.cluster, THINGS)
    await until(lambda: strict.gateway.catalog is not None and strict.gateway.catalog.serves("things.get"))
    wrong = await strict.http.delete("/things/7")
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET"
    assert wrong.headers["content-type"] == protocol.PROBLEM_JSON
    unknown = await strict.http.get("/thingamajigs")
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == protocol.PROBLEM_JSON


async def test_allowed_response_headers_pass_and_the_others_are_dropped_and_counted(strict: Harness) -> None:
    announce(strict.cluster, THINGS)
    await until(lambda: strict.gateway.catalog is not None and strict.gateway.catalog.serves("things.get"))

    def created(request: protocol.Request) -> protocol.Reply:
        headers = {
            "Location": "/things/5",
            "set-cookie": "session=1",
            "etag": "a\r\nx-evil: 1",
            "connection": "close",
        }
        return protocol.Reply(
            request.correlation_id, 201, b"{}", "application/json", response_headers=headers
        )

    with FakeWorker(strict.cluster, {"things.get": created}):
        response = await strict.http.post("/things", content=b"{}")
    assert response.status_code == 201
    assert response.headers["location"] == "/things/5"
    assert "set-cookie" not in response.headers
    assert "x-evil" not in response.headers
    assert "etag" not in response.headers
    assert strict.metric("rpcgw_reply_headers_dropped_total", reason="not_allowed") == 2
    assert strict.metric("rpcgw_reply_headers_dropped_total", reason="invalid_value") == 1


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "invalid"),
        (Entry("things", "i1", 1, (Method("health", routes=("GET /healthz",)),)).value(), "reserved_path"),
        (Entry("things", "i1", 1, (Method("metrics", routes=("GET /metrics",)),)).value(), "reserved_path"),
        (
            Entry("things", "i1", 1, (Method("big", body={"description": "x" * 10_000_000}),)).value(),
            "invalid",
        ),
    ],
)
async def test_hostile_records_are_refused_counted_and_never_served(
    strict: Harness, value: bytes, reason: str
) -> None:
    good = announce(strict.cluster, THINGS)
    catalog = strict.gateway.catalog
    assert catalog is not None
    await until(lambda: catalog.serves("things.get"))
    strict.cluster.append(CATALOG, value, key=good.key)  # would replace the good entry
    await until(lambda: strict.metric("rpcgw_catalog_refused_total", reason=reason) == 1)
    assert catalog.serves("things.get")  # the entry it would have replaced stays
    assert set(catalog.served) == {"things.get"}
    assert (await strict.http.get("/healthz")).json() == {"status": "ok"}


async def test_withdrawn_and_stale_entries_stop_counting(strict: Harness) -> None:
    entry = announce(strict.cluster, THINGS)
    catalog = strict.gateway.catalog
    assert catalog is not None
    await until(lambda: catalog.serves("things.get"))
    strict.cluster.append(CATALOG, None, key=entry.key)  # withdrawn
    await until(lambda: not catalog.serves("things.get"))
    announce(strict.cluster, THINGS, instance="i2", age=5.0)  # heartbeat long past stale_after
    announce(strict.cluster, Method("fresh.one"), instance="i3")
    await until(lambda: catalog.serves("fresh.one"))
    assert not catalog.serves("things.get")
    await until(lambda: not catalog.serves("fresh.one"))  # its heartbeats stop: it goes stale


async def test_openapi_lists_every_method_and_route_of_the_catalog(strict: Harness) -> None:
    before = (await strict.http.get("/openapi.json")).json()
    assert "/rpc/things.get" not in before["paths"]
    announce(strict.cluster, THINGS)
    await until(lambda: strict.gateway.catalog is not None and strict.gateway.catalog.serves("things.get"))
    document = (await strict.http.get("/openapi.json")).json()
    assert {"/rpc/things.get", "/things/{thing_id}", "/things", "/rpc/{method}"} <= set(document["paths"])
    get = document["paths"]["/things/{thing_id}"]["get"]
    assert get["parameters"][0] == {
        "name": "thing_id",
        "in": "path",
        "required": True,
        "schema": {"type": "integer"},
    }
    assert "422" in get["responses"]
    assert orjson.loads(orjson.dumps(document)) == document


async def test_the_documents_validate_against_the_official_schemas(strict: Harness) -> None:
    class Item(BaseModel):
        sku: str

    class Basket(BaseModel):
        items: list[Item]

    announce(
        strict.cluster,
        THINGS,
        Method(
            "baskets.create",
            routes=("POST /baskets",),
            body=Basket.model_json_schema(),
            output=Basket.model_json_schema(),
            status=201,
        ),
    )
    await until(lambda: strict.gateway.catalog is not None and len(strict.gateway.catalog.served) == 2)
    openapi_document = (await strict.http.get("/openapi.json")).json()
    validate_openapi(openapi_document)
    assert openapi_document["paths"]["/baskets"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["properties"]["items"]["items"] == {"$ref": "#/components/schemas/baskets.create.Item"}
    asyncapi_document = (await strict.http.get("/asyncapi.json")).json()
    jsonschema.validate(asyncapi_document, asyncapi_schema())
    assert {"things.get", "baskets.create", "problem"} <= set(
        asyncapi_document["channels"]["replies"]["messages"]
    )


async def test_docs_are_served_from_the_gateway_itself(strict: Harness) -> None:
    page = await strict.http.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources
    assert all(source.startswith("/static-docs/") for source in sources), sources
    for source in sources:
        assert (await strict.http.get(source)).status_code == 200

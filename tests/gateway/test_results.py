"""GET /results/{token}: each answer of `ResultEndpoint`, over a real `ResultLookup` and the fake cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest
from prometheus_client import CollectorRegistry, Counter

from gateway.access import IDENTITY
from gateway.headers import HeaderPolicy
from gateway.locations import PREFIX, ResultHandle, ResultLocations
from gateway.lookup import ResultLookup
from gateway.results import ResultEndpoint, serves
from kafkarpc import protocol

from .test_lookup import OURS, TOPIC, RetainedKafka, others, part, put

KEY = b"r" * 32
MAX_WAIT = 5.0

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send


class Client:
    """The endpoint behind httpx, with the caller's identity set as the gatekeeper would."""

    def __init__(self, cluster: RetainedKafka, lookup: ResultLookup) -> None:
        self.cluster = cluster
        self.locations = ResultLocations(KEY, ttl=600)
        self.registry = CollectorRegistry()
        self.counter = Counter("rpcgw_result_lookups", "doc", ["outcome"], registry=self.registry)
        self.dropped: list[str] = []
        self.endpoint = ResultEndpoint(
            locations=self.locations,
            finder=lookup,
            headers=HeaderPolicy([], 8_192),
            max_wait=MAX_WAIT,
            lookups=self.counter,
            dropped=self.dropped.append,
        )
        self.subject: str | None = None
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://gw")

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.subject is not None:
            scope[IDENTITY] = protocol.Identity(self.subject)
        await self.endpoint(scope, receive, send)

    def location(self, *, offset: int = 0, subject: str | None = None, deadline_in: float = 60.0) -> str:
        deadline_ms = int((time.time() + deadline_in) * 1000)
        return self.locations.location(ResultHandle(0, offset, OURS, subject, deadline_ms))

    def counted(self, outcome: str) -> float:
        return self.registry.get_sample_value("rpcgw_result_lookups_total", {"outcome": outcome}) or 0.0


@pytest.fixture
def cluster() -> RetainedKafka:
    return RetainedKafka({TOPIC: 1})


@pytest.fixture
async def client(cluster: RetainedKafka) -> AsyncIterator[Client]:
    lookup = ResultLookup(cluster, {}, TOPIC, readers=2, scan_limit=1_000, timeout=1.0)
    client = Client(cluster, lookup)
    async with client.http:
        yield client
    await lookup.close()


def assert_common(response: httpx.Response, *, correlated: bool = True) -> None:
    assert response.headers["cache-control"] == "no-store"
    if correlated:
        assert response.headers["x-correlation-id"] == OURS


def assert_problem(response: httpx.Response, status: int, detail: str) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    body: dict[str, Any] = orjson.loads(response.content)
    assert body["status"] == status
    assert detail in body["detail"]
    return body


def test_serves_only_results_paths() -> None:
    assert serves("/results/abc")
    assert not serves("/results/")
    assert not serves("/results/abc/more")
    assert not serves("/rpc/abc")


async def test_a_found_reply_is_answered_as_the_call_would_have_been(client: Client) -> None:
    others(client.cluster, 2)
    reply = protocol.Reply(
        OURS, 201, b'{"id": 7}', "application/json", response_headers={"location": "/o/7", "x-secret": "1"}
    )
    put(client.cluster, reply)
    response = await client.http.get(client.location())
    assert response.status_code == 201
    assert response.content == b'{"id": 7}'
    assert response.headers["content-type"] == "application/json"
    assert response.headers["location"] == "/o/7"
    assert "x-secret" not in response.headers
    assert client.dropped == ["not_allowed"]
    assert "preference-applied" not in response.headers
    assert_common(response)
    assert client.counted("ok") == 1


async def test_a_worker_rejection_passes_through_and_a_failure_is_502(client: Client) -> None:
    problem = protocol.Reply.problem(OURS, 500, "Internal Server Error", "database down")
    put(client.cluster, problem)
    response = await client.http.get(client.location())
    assert_problem(response, 502, "database down")
    assert_common(response)
    assert client.counted("worker_error") == 1


async def test_a_streamed_reply_is_ndjson_of_its_parts(client: Client) -> None:
    put(client.cluster, part(0, b'{\n  "n": 0\n}'))
    others(client.cluster, 1)
    put(client.cluster, part(1, b"plain text"))
    put(client.cluster, part(2, b"", final=True))
    response = await client.http.get(client.location())
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.content == b'{"n":0}\n"plain text"\n'
    assert_common(response)


async def test_a_failed_stream_ends_with_an_error_line(client: Client) -> None:
    put(client.cluster, part(0, b"[1]"))
    end = protocol.Reply.problem(OURS, 409, "Conflict", "changed meanwhile")
    put(client.cluster, protocol.Reply(OURS, 409, end.body, protocol.PROBLEM_JSON, sequence=1, final=True))
    response = await client.http.get(client.location())
    lines = [orjson.loads(line) for line in response.content.splitlines()]
    assert lines[0] == [1]
    assert lines[1]["error"]["detail"] == "changed meanwhile"


async def test_a_streamed_result_is_server_sent_events_for_a_caller_that_asks(client: Client) -> None:
    put(client.cluster, part(0, b"[1]"))
    put(client.cluster, part(1, b"", final=True))
    response = await client.http.get(client.location(), headers={"accept": "text/event-stream"})
    assert response.status_code == 200
    assert response.content == b'id: 0\ndata: [1]\n\nevent: end\ndata: {"parts": 1}\n\n'


async def test_a_stream_whose_end_came_without_all_parts_is_502(client: Client) -> None:
    put(client.cluster, part(0))
    put(client.cluster, part(2, final=True))
    response = await client.http.get(client.location())
    assert_problem(response, 502, "missing parts")


async def test_pending_is_202_with_a_location_that_resumes_further_on(client: Client) -> None:
    others(client.cluster, 3)
    response = await client.http.get(client.location())
    assert response.status_code == 202
    assert response.content == b""
    assert response.headers["retry-after"] == "1"
    assert "preference-applied" not in response.headers
    assert_common(response)
    location = response.headers["location"]
    resumed = client.locations.handle(location[len(PREFIX) :])
    assert resumed.offset == 3
    assert resumed.correlation_id == OURS
    put(client.cluster, protocol.Reply(OURS, 200, b"now"))
    client.cluster.handed.clear()
    answered = await client.http.get(location)
    assert answered.content == b"now"
    assert client.cluster.handed == [3]  # the resumed lookup read nothing twice
    assert client.counted("pending") == 1


async def test_prefer_wait_long_polls_and_is_reported_applied(client: Client) -> None:
    request = asyncio.create_task(client.http.get(client.location(), headers={"prefer": "wait=4"}))
    await client.cluster.wait_for(lambda: client.cluster.calls["watermarks"] >= 1)
    put(client.cluster, protocol.Reply(OURS, 200, b"waited for"))
    response = await asyncio.wait_for(request, 10)
    assert response.status_code == 200
    assert response.content == b"waited for"
    assert response.headers["preference-applied"] == "wait=4"


async def test_a_wait_above_the_maximum_is_not_honoured(client: Client) -> None:
    response = await client.http.get(client.location(), headers={"prefer": "respond-async, wait=600"})
    assert response.status_code == 202
    assert "preference-applied" not in response.headers


async def test_another_callers_result_is_403(client: Client) -> None:
    put(client.cluster, protocol.Reply(OURS, 200, b"alices"))
    location = client.location(subject="alice")
    for subject in (None, "mallory"):
        client.subject = subject
        response = await client.http.get(location)
        assert_problem(response, 403, "another caller")
        assert_common(response)
    client.subject = "alice"
    assert (await client.http.get(location)).content == b"alices"


async def test_a_result_issued_to_nobody_is_the_holders(client: Client) -> None:
    put(client.cluster, protocol.Reply(OURS, 200, b"anyones"))
    client.subject = "bob"
    assert (await client.http.get(client.location(subject=None))).content == b"anyones"


@pytest.mark.parametrize("case", ["tampered", "expired", "foreign", "garbage"])
async def test_a_bad_token_is_404_without_a_lookup(client: Client, case: str) -> None:
    location = client.location()
    if case == "tampered":
        location = location[:-2] + ("AA" if not location.endswith("AA") else "BB")
    elif case == "expired":
        location = client.location(deadline_in=-3_600)
    elif case == "foreign":
        other = ResultLocations(b"o" * 32, ttl=600)
        location = other.location(client.locations.handle(location[len(PREFIX) :]))
    else:
        location = PREFIX + "nope"
    response = await client.http.get(location)
    assert_problem(response, 404, "")
    assert_common(response, correlated=False)
    assert client.cluster.calls["watermarks"] == 0
    assert client.counted("no_such_result") == 1


async def test_a_reply_retention_removed_is_404_gone(client: Client) -> None:
    others(client.cluster, 4)
    client.cluster.log_start[(TOPIC, 0)] = 3
    response = await client.http.get(client.location(offset=1))
    assert_problem(response, 404, "no longer kept")
    assert_common(response)
    assert client.counted("gone") == 1


async def test_no_reply_after_the_deadline_is_504(client: Client) -> None:
    others(client.cluster, 2)
    response = await client.http.get(client.location(deadline_in=-11), headers={"prefer": "wait=5"})
    assert_problem(response, 504, "deadline passed without a reply")
    assert_common(response)
    assert "preference-applied" not in response.headers  # nothing left to wait for
    assert client.counted("timeout") == 1


async def test_within_the_grace_period_it_is_still_pending(client: Client) -> None:
    response = await client.http.get(client.location(deadline_in=-5))
    assert response.status_code == 202


async def test_other_verbs_are_405(client: Client) -> None:
    response = await client.http.post(client.location())
    assert_problem(response, 405, "use GET")
    assert response.headers["allow"] == "GET"
    assert_common(response, correlated=False)

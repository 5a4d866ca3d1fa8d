"""Long work and streamed answers on the real path: uvicorn, the gateway, real Kafka, real workers.

respond-async results fetched from another replica, forged and foreign locations refused,
1,000 streamed parts in order, a worker killed mid-stream, and a caller's hang-up stopping
the handler.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from gateway.access import AccessSettings
from gateway.app import GatewayAPI, create_app
from tests.issuer import AUDIENCE, ISSUER, Issuer
from workers import HandlerRegistry
from workers.examples import registry as examples

from .harness import Topics, gateway_of, serving, working

KEY = "k" * 40


def replica(topics: Topics, partition: int, key: str = KEY, **overrides: object) -> GatewayAPI:
    """A gateway replica reading reply partition ``partition``, signing locations with ``key``."""
    settings = topics.settings(reply_partition=partition, result_key=key, **overrides)
    return create_app(settings, topics.kafka_settings())


async def served(app: object, method: str) -> None:
    catalog = gateway_of(app).catalog  # type: ignore[arg-type]
    assert catalog is not None
    async with asyncio.timeout(30):
        while method not in catalog.served:  # noqa: ASYNC110 - the catalog consumer's state
            await asyncio.sleep(0.01)


class Work:
    """Handlers whose progress the test can see: a slow call and a stream that notes its end."""

    def __init__(self) -> None:
        self.registry = HandlerRegistry()
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.registry.handler("work")(self.work)
        self.registry.handler("ticks")(self.ticks)

    async def work(self, seconds: float = 1.0) -> dict[str, float]:
        self.started.set()
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return {"slept": seconds}

    async def ticks(self, n: int = 1_000_000) -> AsyncIterator[dict[str, int]]:
        try:
            for i in range(n):
                self.started.set()
                yield {"i": i}
                await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def test_an_async_result_is_fetched_from_another_replica(topics: Topics) -> None:
    work = Work()
    a, b = replica(topics, 0), replica(topics, 1)
    async with (
        working(topics, work.registry),
        serving(a) as url_a,
        serving(b) as url_b,
        httpx.AsyncClient(base_url=url_a, timeout=30) as on_a,
        httpx.AsyncClient(base_url=url_b, timeout=30) as on_b,
    ):
        await served(a, "work")
        accepted = await on_a.post("/rpc/work?seconds=2", headers={"prefer": "respond-async"})
        assert accepted.status_code == 202
        assert accepted.headers["preference-applied"] == "respond-async"
        location = accepted.headers["location"]
        assert location.startswith("/results/")
        assert orjson.loads(accepted.content)["location"] == location

        pending = await on_b.get(location)
        assert pending.status_code == 202
        assert pending.headers["retry-after"] == "1"
        assert pending.headers["location"].startswith("/results/")

        done = await on_b.get(pending.headers["location"], headers={"prefer": "wait=10"})
        assert done.status_code == 200
        assert orjson.loads(done.content) == {"slept": 2.0}
        assert done.headers["x-correlation-id"] == accepted.headers["x-correlation-id"]
        # Read again, from the first location too: the result stays until the topic's retention.
        assert (await on_a.get(location)).content == done.content

        # respond-async with wait: answered at once when the work is quicker than the wait.
        quick = await on_a.post("/rpc/work?seconds=0.1", headers={"prefer": "respond-async, wait=10"})
        assert quick.status_code == 200
        assert orjson.loads(quick.content) == {"slept": 0.1}


async def test_a_forged_or_another_keys_location_is_refused(topics: Topics) -> None:
    work = Work()
    a, stranger = replica(topics, 0), replica(topics, 1, key="s" * 40)
    async with (
        working(topics, work.registry),
        serving(a) as url_a,
        serving(stranger) as url_s,
        httpx.AsyncClient(base_url=url_a, timeout=30) as on_a,
        httpx.AsyncClient(base_url=url_s, timeout=30) as on_s,
    ):
        await served(a, "work")
        accepted = await on_a.post("/rpc/work?seconds=0", headers={"prefer": "respond-async"})
        location = accepted.headers["location"]
        assert (await on_a.get(location, headers={"prefer": "wait=10"})).status_code == 200
        token = location.removeprefix("/results/")
        header, claims, signature = token.split(".")
        # Claims pointing at another offset, with the old signature: no way to scan the topic.
        forged = orjson.loads(_b64decode(claims))
        forged["o"] += 1000
        for bad in (
            f"{header}.{_b64encode(orjson.dumps(forged))}.{signature}",
            f"{header}.{claims}.{signature[:-2]}AA",
            "garbage",
        ):
            refused = await on_a.get(f"/results/{bad}")
            assert refused.status_code == 404, bad
            assert refused.headers["content-type"] == "application/problem+json"
        # A replica with another key cannot read it either.
        assert (await on_s.get(location)).status_code == 404


async def test_only_the_caller_who_asked_reads_the_result(topics: Topics) -> None:
    issuer = Issuer()
    issuer.add_key("k1", "ec")
    with issuer.serving() as jwks_url:
        access = AccessSettings(
            mode="jwt", jwks_url=jwks_url, issuer=ISSUER, audience=AUDIENCE, policy={"methods": {"work": []}}
        )
        app = create_app(topics.settings(result_key=KEY), topics.kafka_settings(), access=access)
        alice = {"authorization": f"Bearer {issuer.token('k1', subject='alice')}"}
        mallory = {"authorization": f"Bearer {issuer.token('k1', subject='mallory')}"}
        async with (
            working(topics, Work().registry),
            serving(app) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as http,
        ):
            await served(app, "work")
            accepted = await http.post("/rpc/work?seconds=0", headers={"prefer": "respond-async", **alice})
            location = accepted.headers["location"]
            assert (await http.get(location)).status_code == 401
            assert (await http.get(location, headers=mallory)).status_code == 403
            mine = await http.get(location, headers={"prefer": "wait=10", **alice})
            assert mine.status_code == 200


async def test_a_thousand_parts_arrive_in_order_with_nothing_missing(topics: Topics) -> None:
    app = replica(topics, 0)
    async with (
        working(topics, examples),
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await served(app, "count")
        body = orjson.dumps({"n": 1000, "interval": 0})
        async with http.stream("POST", "/rpc/count", content=body) as response:
            assert response.headers["content-type"] == "application/x-ndjson"
            lines = [orjson.loads(line) async for line in response.aiter_lines() if line]
        assert [line["i"] for line in lines] == list(range(1000))

        async with http.stream(
            "POST", "/count", content=body, headers={"accept": "text/event-stream"}
        ) as response:
            events = (await response.aread()).decode().split("\n\n")
        ids = [int(event.split("\n")[0].removeprefix("id: ")) for event in events if event.startswith("id: ")]
        assert ids == list(range(1000))
        assert 'event: end\ndata: {"parts": 1000}' in events


async def test_a_caller_that_hangs_up_mid_stream_stops_the_handler(topics: Topics) -> None:
    work = Work()
    app = replica(topics, 0)
    async with (
        working(topics, work.registry) as worker,
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await served(app, "ticks")
        async with http.stream("POST", "/rpc/ticks", headers={"accept": "text/event-stream"}) as response:
            lines = response.aiter_lines()
            assert (await anext(lines)).startswith("id: 0")
        # Leaving the block closed the connection: the gateway sends a cancel, the worker stops.
        await asyncio.wait_for(work.cancelled.wait(), 10)
        stage = {"method": "ticks", "stage": "running"}
        assert worker.metrics.registry.get_sample_value("rpcworker_cancels_total", stage) == 1
        assert (
            gateway_of(app).metrics.registry.get_sample_value(
                "rpcgw_cancels_total", {"reason": "disconnected"}
            )
            == 1
        )


async def test_a_caller_that_hangs_up_mid_call_stops_the_handler(topics: Topics) -> None:
    work = Work()
    app = replica(topics, 0)
    async with (
        working(topics, work.registry),
        serving(app) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await served(app, "work")
        call = asyncio.create_task(http.post("/rpc/work?seconds=30"))
        await asyncio.wait_for(work.started.wait(), 10)
        call.cancel()  # the client closes the connection
        await asyncio.wait_for(work.cancelled.wait(), 10)


async def test_a_worker_killed_mid_stream_ends_it_with_an_error_within_the_idle_timeout(
    topics: Topics, tmp_path: Path
) -> None:
    idle = 2.0
    app = replica(topics, 0, reply_stream_idle_timeout=idle)
    with spawned_worker(topics, tmp_path) as worker:
        problem, killed_at, ended_at = await _kill_mid_stream(app, worker)
    assert problem["status"] == 504
    assert "no part arrived within 2 s" in problem["detail"]
    assert ended_at - killed_at < idle + 1.0  # the idle timeout, not a hang


async def _kill_mid_stream(
    app: GatewayAPI, worker: subprocess.Popen[bytes]
) -> tuple[dict[str, Any], float, float]:
    """Read a count stream, SIGKILL the worker after part 3; the error and when it came."""
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        await served(app, "count")
        body = orjson.dumps({"n": 100, "interval": 0.1})
        async with http.stream(
            "POST", "/rpc/count", content=body, headers={"accept": "text/event-stream"}
        ) as response:
            events: list[str] = []
            killed_at = 0.0
            lines = response.aiter_lines()
            async for line in lines:
                events.append(line)
                if line == "id: 3":
                    worker.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic()
                if line.startswith("event: error"):
                    ended_at = time.monotonic()
                    problem = orjson.loads((await anext(lines)).removeprefix("data: "))
                    break
            else:
                raise AssertionError(f"the stream ended without an error event: {events[-5:]}")
    return problem, killed_at, ended_at


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@contextlib.contextmanager
def spawned_worker(topics: Topics, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m workers`` with the examples, as its own process (so it can be SIGKILLed)."""
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": topics.kafka.bootstrap_servers,
        "WORKER_HANDLERS": "workers.examples:registry",
        "WORKER_GROUP_ID": f"workers-{topics.unique}",
        "WORKER_REQUEST_TOPIC": topics.requests,
        "WORKER_REPLY_TOPICS": topics.replies,
        "WORKER_DEAD_LETTER_TOPIC": f"{topics.requests}.dlt",
        "WORKER_CATALOG_TOPIC": topics.catalog,
        "WORKER_METRICS_PORT": "0",
    }
    with (directory / "worker.log").open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers"],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)

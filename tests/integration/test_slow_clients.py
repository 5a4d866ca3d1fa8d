"""Slow and idle callers against the real gateway server (`GatewayServer`), Kafka and worker.

No connection outlives its deadline, each is counted in /metrics by why it was closed, and
normal callers and /healthz are served throughout, also past the connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import httpx
import orjson

from gateway.app import create_app
from gateway.server import GatewayServer
from gateway.settings import GatewaySettings
from kafkarpc import protocol

from .harness import Topics, working

GENEROUS = 5.0
"""Upper bound on any elapsed time measured here, well above the deadlines set."""


@contextlib.asynccontextmanager
async def gateway_server(topics: Topics, settings: GatewaySettings) -> AsyncIterator[tuple[str, int]]:
    """The gateway as ``python -m gateway`` serves it, on a loopback socket; its address once started."""
    app = create_app(settings, topics.kafka_settings())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    server = GatewayServer(app, settings)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await asyncio.wait_for(app.state.started.wait(), 60)
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await task
        sock.close()


async def until_closed(reader: asyncio.StreamReader, opened: float) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and seconds from ``opened`` to then."""
    data = await asyncio.wait_for(reader.read(), 10 * GENEROUS)
    return data, time.monotonic() - opened


def gauge(exposition: str, sample: str) -> float:
    """The value of ``sample`` (name and labels, as exposed) in a Prometheus text exposition."""
    prefix = f"{sample} "
    return float(next(line for line in exposition.splitlines() if line.startswith(prefix))[len(prefix) :])


def closed_total(exposition: str, reason: str) -> float:
    return gauge(exposition, f'rpcgw_connections_closed_total{{reason="{reason}"}}')


async def test_idle_slow_and_short_callers_are_cut_and_counted_while_others_are_served(
    topics: Topics,
) -> None:
    settings = topics.settings(head_timeout=1.0, body_timeout=1.0, keepalive_timeout=1.0)
    async with working(topics), gateway_server(topics, settings) as (host, port):
        opened = time.monotonic()
        idle_reader, idle_writer = await asyncio.open_connection(host, port)
        slow_reader, slow_writer = await asyncio.open_connection(host, port)
        short_reader, short_writer = await asyncio.open_connection(host, port)
        short_writer.write(b'POST /rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"cut": ')

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 100 + b"\r\n\r\n":
                    slow_writer.write(bytes([byte]))
                    await slow_writer.drain()
                    await asyncio.sleep(0.1)  # the slow sender's pace: its head would take 14 s

        sender = asyncio.create_task(trickle())
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=GENEROUS) as http:
            served = await asyncio.gather(
                *(http.post("/rpc/echo", content=b'{"n": %d}' % i) for i in range(20))
            )
            healthz = await http.get("/healthz")
            (idle, idle_elapsed), (slow, slow_elapsed), (short, short_elapsed) = await asyncio.gather(
                until_closed(idle_reader, opened),
                until_closed(slow_reader, opened),
                until_closed(short_reader, opened),
            )
            sender.cancel()
            exposition = (await http.get("/metrics")).text
        for writer in (idle_writer, slow_writer, short_writer):
            writer.close()
    assert [response.status_code for response in served] == [200] * 20
    assert healthz.status_code == 200
    assert idle == b""
    assert slow.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert short.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert (
        orjson.loads(short.partition(b"\r\n\r\n")[2])["detail"]
        == "no byte of the request body arrived for 1 s"
    )
    assert all(1.0 <= elapsed < GENEROUS for elapsed in (idle_elapsed, slow_elapsed, short_elapsed))
    assert closed_total(exposition, "head_timeout") == 2
    assert closed_total(exposition, "body_timeout") == 1
    assert 'rpcgw_requests_total{method="echo",outcome="disconnected"} 1.0' in exposition


async def test_past_the_cap_a_caller_gets_a_fast_503_while_healthz_is_answered(topics: Topics) -> None:
    settings = topics.settings(max_connections=4, head_timeout=30.0, keepalive_timeout=30.0)
    async with working(topics), gateway_server(topics, settings) as (host, port):
        held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(settings.max_connections):  # answered once, then kept alive
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b'"ok"}'), GENEROUS)
            held.append((reader, writer))
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=GENEROUS) as http:
            started = time.monotonic()
            refused = await http.post("/rpc/echo", content=b'{"turned": "away"}')
            refused_in = time.monotonic() - started
            healthz = await http.get("/healthz")
            readyz = await http.get("/readyz")
            exposition = (await http.get("/metrics")).text
        for _, writer in held:
            writer.close()
    assert refused.status_code == 503
    assert refused.headers["content-type"] == protocol.PROBLEM_JSON
    assert refused.headers["retry-after"] == "1"
    assert refused.headers["connection"] == "close"
    assert (
        orjson.loads(refused.content)["detail"] == "the gateway has more than 4 connections open; retry later"
    )
    assert refused_in < 1.0
    assert healthz.status_code == 200
    assert readyz.status_code == 200
    assert closed_total(exposition, "over_limit") == 1
    assert "rpcgw_connections_limit 4.0" in exposition
    # The four held and the scrape's own (the probes' connections may not be reaped yet).
    assert 5 <= gauge(exposition, "rpcgw_connections_open") <= 7

"""The load generator's reply checking and the latency summary, against a tiny local server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from bench.latency import Latencies
from bench.loadgen import LoadGenerator
from bench.request import RequestTemplate


async def _serve(answer: Callable[[bytes], bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = answer(await reader.readexactly(length))
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


@pytest.fixture
async def echo_port() -> AsyncIterator[int]:
    server = await _serve(lambda body: body)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
async def liar_port() -> AsyncIterator[int]:
    # Answers every request with the body of request 0: right shape, wrong reply.
    first = RequestTemplate("x", 0, "/", 256)
    server = await _serve(lambda body: body[:10] + first.build(0)[0][10:])
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_open_loop_counts_correct_echoes(echo_port: int) -> None:
    generator = LoadGenerator("127.0.0.1", echo_port)
    step = await generator.open_loop(rate=200, seconds=0.5, warmup=0.1, connections=4)
    assert step.sent == step.ok == 100
    assert step.errors == step.timeouts == 0
    assert step.latency_ms["p50"] > 0
    assert step.send_lag_ms


async def test_open_loop_hands_out_its_time_zero_once_warm(echo_port: int) -> None:
    generator = LoadGenerator("127.0.0.1", echo_port)
    starts: list[float] = []
    before = time.perf_counter()
    step = await generator.open_loop(rate=100, seconds=0.2, warmup=0.0, connections=2, on_start=starts.append)
    assert step.ok == 20
    assert len(starts) == 1
    # Time zero is ahead of the call (the connections were warmed first) and behind the end.
    assert before < starts[0] < time.perf_counter()


async def test_a_wrong_reply_is_an_error(liar_port: int) -> None:
    generator = LoadGenerator("127.0.0.1", liar_port)
    step = await generator.closed_loop(connections=2, seconds=0.3, warmup=0.0)
    assert step.sent > 0
    assert step.ok == 0
    assert step.errors == step.sent
    assert step.notes == [f"{step.sent} x wrong body"]
    assert step.coordinated_omission


def test_nonces_are_unique_fixed_width_and_recoverable() -> None:
    template = RequestTemplate("h", 1, "/rpc/echo", 256)
    bodies = [template.build(index)[0] for index in range(1000)]
    assert len(set(bodies)) == 1000
    assert {len(body) for body in bodies} == {256}
    assert template.nonce(7).encode() in bodies[7]
    head, _ = template.build(3)[1].split(b"\r\n\r\n", 1)
    assert b"content-length: 256" in head


def test_latency_summary_uses_hdr_percentiles() -> None:
    latencies = Latencies()
    for millis in range(1, 1001):
        latencies.add(millis * 1_000_000)
    summary = latencies.summary()
    assert summary["p50"] == pytest.approx(500, rel=0.002)
    assert summary["p99"] == pytest.approx(990, rel=0.002)
    assert summary["max"] == pytest.approx(1000, rel=0.002)
    assert Latencies().summary() == {}

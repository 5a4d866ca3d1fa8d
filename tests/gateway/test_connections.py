"""Connections no caller can hold: head, body and idle timeouts, the cap, counts and logs.

A real uvicorn with the gateway's protocol on a loopback socket, with timeouts of a fraction
of a second; elapsed-time bounds are generous, for a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry

from gateway import connections as connections_module
from gateway.connections import Connections
from gateway.httpprotocol import gateway_http_protocol
from gateway.limits import ConnectionLimits
from gateway.settings import GatewaySettings
from kafkarpc import protocol

from .test_httpprotocol import LIMIT, serving

SHORT = ConnectionLimits(head_timeout=0.5, body_timeout=0.5, keepalive_timeout=0.3)
"""Timeouts short enough for a test; the cap is the default (never reached here)."""
PATIENT = ConnectionLimits(
    head_timeout=30, body_timeout=30, keepalive_timeout=30, max_connections=2, ceiling=4
)
"""Nothing times out during a test; two connections served, two more past the cap."""
GENEROUS = 5.0
"""Upper bound on any elapsed time a test measures (the deadlines are well below it)."""


class App:
    """Reads the whole body and answers 200 with it; ``/hold`` first works for ``hold`` seconds."""

    def __init__(self, hold: float = 0.0) -> None:
        self.hold = hold
        self.disconnected: asyncio.Queue[str] = asyncio.Queue()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                await self.disconnected.put(scope["path"])
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/hold":
            await asyncio.sleep(self.hold)  # the app's own work, longer than every timeout
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))],
            }
        )
        await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def guarded(limits: ConnectionLimits, app: Any = None) -> AsyncIterator[tuple[tuple[str, int], Counts]]:
    """uvicorn with the gateway's protocol under ``limits``; yields its address and its counts."""
    connections = Connections(limits)
    counts = Counts(connections)
    async with serving(app or App(), gateway_http_protocol(LIMIT, connections)) as address:
        yield address, counts


class Counts:
    """The connection metrics, read as Prometheus would (through a registry)."""

    def __init__(self, connections: Connections) -> None:
        self.registry = CollectorRegistry()
        connections.metrics.join(self.registry)

    def closed(self, reason: str) -> float:
        value = self.registry.get_sample_value("rpcgw_connections_closed_total", {"reason": reason})
        return 0.0 if value is None else value

    @property
    def open(self) -> float:
        value = self.registry.get_sample_value("rpcgw_connections_open")
        return 0.0 if value is None else value


async def until_closed(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), 10 * GENEROUS)
    return data, time.monotonic() - started


def problem_of(response: bytes) -> tuple[bytes, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    return head, orjson.loads(body)


async def test_a_connection_that_sends_nothing_is_closed_after_the_head_timeout_and_counted() -> None:
    async with guarded(SHORT) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        data, elapsed = await until_closed(reader)
        writer.close()
        assert data == b""  # it asked nothing: nothing to answer
        assert SHORT.head_timeout <= elapsed < GENEROUS
        assert counts.closed("head_timeout") == 1


async def test_a_head_sent_a_byte_at_a_time_is_cut_with_408_although_bytes_keep_coming() -> None:
    head = b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * 200 + b"\r\n\r\n"
    async with guarded(SHORT) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in head:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)  # the slow sender's pace: the whole head would take 4 s

        sender = asyncio.create_task(trickle())
        response, elapsed = await until_closed(reader)
        sender.cancel()
        writer.close()
        head_lines, problem = problem_of(response)
        assert head_lines.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"content-type: " + protocol.PROBLEM_JSON.encode() in head_lines
        assert problem["status"] == 408
        assert SHORT.head_timeout <= elapsed < GENEROUS
        assert counts.closed("head_timeout") == 1


async def test_a_cut_caller_gets_the_408_and_end_of_stream_while_the_gateway_still_reads() -> None:
    """Closing with a caller's bytes unread resets the connection, and a reset can overtake the
    answer (a caller still sending, as in tests/integration/test_slow_clients.py). So the gateway
    half-closes after the 408 and keeps reading (and dropping) until its next sweep: when the
    caller sees end of stream, the connection is still open on the gateway's side."""
    async with guarded(SHORT) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: ")

        response, elapsed = await until_closed(reader)  # the 408, then end of stream
        lingering = counts.open
        writer.write(b"more of the head")  # read and dropped, not answered with a reset
        await writer.drain()
        writer.close()
        assert response.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert SHORT.head_timeout <= elapsed < GENEROUS
        assert lingering == 1
        assert counts.closed("head_timeout") == 1


async def test_a_body_short_of_its_content_length_gets_408_and_the_app_a_disconnect() -> None:
    app = App()
    async with guarded(SHORT, app) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST /short HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\nabc")
        response, elapsed = await until_closed(reader)
        writer.close()
        head_lines, problem = problem_of(response)
        assert head_lines.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b"connection: close" in head_lines
        assert problem["detail"] == "no byte of the request body arrived for 0.5 s"
        assert SHORT.body_timeout <= elapsed < GENEROUS
        assert await asyncio.wait_for(app.disconnected.get(), GENEROUS) == "/short"
        assert counts.closed("body_timeout") == 1


async def test_a_slow_but_steady_body_is_read_whole() -> None:
    body = b"0123456789" * 2
    async with guarded(SHORT) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % len(body))
        started = time.monotonic()
        for byte in body:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)  # the sender's pace: a tenth of the body timeout between bytes
        response = await asyncio.wait_for(reader.readuntil(body), GENEROUS)
        writer.close()
        assert time.monotonic() - started > SHORT.body_timeout  # longer in all than the timeout
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert counts.closed("body_timeout") == 0


async def test_a_kept_alive_connection_is_closed_once_idle_without_a_word() -> None:
    async with guarded(SHORT) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nok")
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\nok"), GENEROUS)
        data, elapsed = await until_closed(reader)
        writer.close()
        assert data == b""
        assert SHORT.keepalive_timeout <= elapsed < GENEROUS
        assert counts.closed("idle") == 1
        assert counts.closed("head_timeout") == 0


async def test_a_request_the_app_works_on_longer_than_every_timeout_is_answered() -> None:
    async with guarded(SHORT, App(hold=3 * SHORT.head_timeout)) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: 4\r\n\r\nwork")
        response = await asyncio.wait_for(reader.readuntil(b"work"), GENEROUS)
        writer.close()
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sum(counts.closed(r) for r in ("head_timeout", "body_timeout", "idle")) == 0


async def test_a_request_pipelined_behind_a_long_one_waits_without_being_cut() -> None:
    async with guarded(SHORT, App(hold=3 * SHORT.head_timeout)) as (address, counts):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(
            b"POST /hold HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nfirst"
            b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\n\r\nsecond"
        )
        first = await asyncio.wait_for(reader.readuntil(b"first"), GENEROUS)
        second = await asyncio.wait_for(reader.readuntil(b"second"), GENEROUS)
        writer.close()
        assert first.startswith(b"HTTP/1.1 200 OK\r\n")
        assert second.startswith(b"HTTP/1.1 200 OK\r\n")
        assert sum(counts.closed(r) for r in ("head_timeout", "body_timeout", "idle")) == 0


async def served(address: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection the server has accepted and answered once, kept alive."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
    await asyncio.wait_for(reader.readuntil(b"\r\n\r\nhi"), GENEROUS)
    return reader, writer


async def test_past_the_cap_probes_are_answered_and_everything_else_gets_a_fast_503() -> None:
    async with guarded(PATIENT) as (address, counts):
        held = [await served(address) for _ in range(PATIENT.max_connections)]
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        probe, _ = await until_closed(reader)
        writer.close()
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST /rpc/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\nhi")
        refused, elapsed = await until_closed(reader)
        writer.close()
        assert counts.open >= PATIENT.max_connections
        for _, held_writer in held:
            held_writer.close()
    assert probe.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"connection: close\r\n" in probe  # it does not stay past the cap
    head_lines, problem = problem_of(refused)
    assert head_lines.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"content-type: " + protocol.PROBLEM_JSON.encode() in head_lines
    assert b"retry-after: 1\r\n" in head_lines
    assert head_lines.endswith(b"\r\nconnection: close")
    assert problem == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the gateway has more than 2 connections open; retry later",
    }
    assert elapsed < 1.0
    assert counts.closed("over_limit") == 1


async def test_past_the_ceiling_a_connection_is_answered_503_unread_and_closed() -> None:
    async with guarded(PATIENT) as (address, counts):
        held = [await served(address) for _ in range(PATIENT.max_connections)]
        # Accepted in order, so these two are counted before the next one.
        held += [
            await asyncio.open_connection(*address) for _ in range(PATIENT.ceiling - PATIENT.max_connections)
        ]
        reader, writer = await asyncio.open_connection(*address)
        refused, _ = await until_closed(reader)  # it sends nothing: the answer comes unasked
        writer.close()
        for _, held_writer in held:
            held_writer.close()
    assert refused.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 1\r\n" in refused
    assert counts.closed("over_ceiling") == 1


async def test_many_closes_make_one_log_line_not_one_per_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.connections")
    async with guarded(SHORT) as (address, counts):
        idle = [await asyncio.open_connection(*address) for _ in range(20)]
        for reader, writer in idle:
            await until_closed(reader)
            writer.close()
        assert counts.closed("head_timeout") == 20
    records = [r for r in caplog.records if r.name == "gateway.connections"]
    # The first sweep that closes some reports at once; any closed by the next sweeps (if their
    # deadlines straddle one) wait for the next report, LOG_INTERVAL later.
    assert len(records) == 1
    assert records[0].levelno == logging.INFO
    assert 1 <= records[0].closed["head_timeout"] <= 20  # type: ignore[attr-defined]
    assert "head_timeout" in records[0].getMessage()


async def test_freed_memory_is_handed_back_after_many_connections_close(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trimmed = asyncio.Event()
    monkeypatch.setattr(connections_module, "_malloc_trim", lambda: lambda pad: trimmed.set())
    connections = Connections(SHORT)

    class Quiet:
        def expire_if_overdue(self, now: float) -> str | None:
            return None

    server: set[Any] = set()
    loop = asyncio.get_running_loop()
    many = [Quiet() for _ in range(connections_module.TRIM_AFTER + 1)]
    for connection in many:
        server.add(connection)
        connections.admit(connection, server, loop)
    for connection in many:
        server.discard(connection)
        connections.release(connection)
    await asyncio.wait_for(trimmed.wait(), GENEROUS)  # by the next sweep


def test_the_limits_follow_the_settings_and_fit_the_open_files_limit() -> None:
    settings = GatewaySettings(head_timeout=3, body_timeout=4, keepalive_timeout=2, max_connections=1000)
    roomy = ConnectionLimits.of(settings, open_files=1 << 20)
    assert roomy == ConnectionLimits(
        head_timeout=3, body_timeout=4, keepalive_timeout=2, max_connections=1000, ceiling=1100, retry_after=1
    )
    cramped = ConnectionLimits.of(settings, open_files=1024)  # a container's usual soft limit
    assert cramped.ceiling == 1024 - 256
    assert cramped.max_connections < cramped.ceiling
    defaults = ConnectionLimits.of(GatewaySettings(), open_files=1 << 20)
    assert defaults == ConnectionLimits()

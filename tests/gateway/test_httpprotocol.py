"""The gateway's httptools protocol: 431 for oversized heads, one write per response, disconnects."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import uvicorn

from gateway.httpprotocol import CONNECTION_CLOSED, gateway_http_protocol
from gateway.transport import FLUSH_BYTES, CoalescingTransport
from kafkarpc import protocol

LIMIT = 4096


@pytest.fixture
async def address() -> AsyncIterator[tuple[str, int]]:
    async with serving(answer) as address:
        yield address


@contextlib.asynccontextmanager
async def serving(app: Any, http: type[asyncio.Protocol] | None = None) -> AsyncIterator[tuple[str, int]]:
    """uvicorn with the gateway's protocol (or ``http``) on a loopback socket bound up front."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    protocol_class = http or gateway_http_protocol(LIMIT)
    config = uvicorn.Config(app, http=protocol_class, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await task
        sock.close()


async def exchange(address: tuple[str, int], head: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(head)
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 10)  # the server closes after answering
    writer.close()
    return response


async def test_a_head_within_the_limit_reaches_the_app(address: tuple[str, int]) -> None:
    head = b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + b"a" * (LIMIT - 100) + b"\r\nconnection: close\r\n\r\n"
    response = await exchange(address, head)
    assert response.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("where", ["header", "url"])
async def test_an_oversized_head_is_431_problem_json_and_closed(address: tuple[str, int], where: str) -> None:
    pad = b"a" * (LIMIT + 1)
    head = (
        b"GET /?q=" + pad + b" HTTP/1.1\r\nhost: x\r\n\r\n"
        if where == "url"
        else b"GET / HTTP/1.1\r\nhost: x\r\nx-pad: " + pad + b"\r\n\r\n"
    )
    response = await exchange(address, head)
    status_line, _, rest = response.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status_line == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert b"content-type: " + protocol.PROBLEM_JSON.encode() in headers
    assert orjson.loads(body)["status"] == 431


async def test_the_connection_closed_extension_is_done_when_the_caller_leaves() -> None:
    seen: asyncio.Queue[asyncio.Future[None]] = asyncio.Queue()

    async def app(scope: dict[str, Any], receive: object, send: object) -> None:
        if scope["type"] == "http":
            closed = scope["extensions"][CONNECTION_CLOSED]["future"]
            await seen.put(closed)
            await closed  # never answers: only the caller leaving ends this

    async with serving(app) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n")
        closed = await asyncio.wait_for(seen.get(), 10)
        assert not closed.done()
        writer.close()
        await asyncio.wait_for(closed, 10)
        del reader


async def callbacks_run() -> None:
    """Return once the callbacks already scheduled have run (the loop runs them in order)."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0


async def test_writes_of_one_iteration_leave_in_one_write_and_in_order() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(bytearray(b"body"))
    assert raw.writes == []
    assert transport.get_write_buffer_size() == 23
    await callbacks_run()
    transport.write(b"next")
    await callbacks_run()
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"next"]


async def test_close_sends_what_is_queued_first_and_later_writes_are_dropped() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"last words")
    transport.close()
    assert raw.writes == [b"last words"]
    assert transport.is_closing()
    transport.write(b"too late")
    await callbacks_run()
    assert raw.writes == [b"last words"]


async def test_a_full_queue_is_written_at_once_so_the_socket_can_push_back() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"x" * (FLUSH_BYTES - 1))
    assert raw.writes == []
    transport.write(b"y")  # without waiting for the next iteration: uvicorn's flow control sees it now
    assert b"".join(raw.writes) == b"x" * (FLUSH_BYTES - 1) + b"y"
    assert transport.get_write_buffer_size() == 0


async def test_after_a_handover_writes_go_straight_through_in_order() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"queued")
    transport.write_through()
    transport.write(b"direct")
    assert raw.writes == [b"queued", b"direct"]


class Spy:
    """Records what reaches the socket's transport; everything else passes through."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._transport = transport
        self._writes = writes

    def write(self, data: bytes) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def writelines(self, data: list[bytes]) -> None:
        self.write(b"".join(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


@contextlib.asynccontextmanager
async def spied(app: Any, writes: list[bytes]) -> AsyncIterator[tuple[str, int]]:
    """`serving` with every socket write recorded in ``writes``."""

    class SpiedProtocol(gateway_http_protocol(LIMIT)):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            super().connection_made(Spy(transport, writes))

    async with serving(app, SpiedProtocol) as address:
        yield address


async def answer(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


async def test_each_response_leaves_in_one_socket_write() -> None:
    writes: list[bytes] = []
    async with spied(answer, writes) as address:
        reader, writer = await asyncio.open_connection(*address)
        for _ in range(3):  # keep-alive: one write per response, not per connection
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await reader.readuntil(b"ok")
        writer.close()
    assert len(writes) == 3
    assert all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok") for w in writes)


async def test_an_answer_queued_when_the_caller_half_closes_is_still_sent() -> None:
    writes: list[bytes] = []
    async with spied(answer, writes) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        writer.write_eof()  # e.g. `nc -N`: the request, then FIN
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    assert response.startswith(b"HTTP/1.1 200 OK")
    assert response.endswith(b"ok")


async def test_a_request_pipelined_before_a_websocket_upgrade_is_answered_first() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
        else:
            await answer(scope, receive, send)

    async with serving(app) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(
            b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
            b"GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
            b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
        )
        first = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        second = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        writer.close()
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert second.startswith(b"ok")
    assert b"101 Switching Protocols" in second

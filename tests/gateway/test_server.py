"""The bounded httptools protocol: oversized request heads get 431 before the app runs."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import orjson
import pytest
import uvicorn

from gateway.server import bounded_http_protocol
from workers import protocol

LIMIT = 4096


@pytest.fixture
async def address() -> AsyncIterator[tuple[str, int]]:
    calls: list[object] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        assert scope["type"] in ("http", "lifespan")
        if scope["type"] == "http":
            calls.append(scope)
            await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
            await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    config = uvicorn.Config(app, http=bounded_http_protocol(LIMIT), lifespan="off", log_level="warning")
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

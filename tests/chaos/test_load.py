"""The chaos load's record of calls that got no HTTP answer: how the connection failed."""

from __future__ import annotations

import asyncio
import socket

import orjson

from chaos.load import CONNECTION_ERROR, Load
from chaos.report import Figures


def _ok(body: bytes) -> bytes:
    nonce = orjson.loads(body)["nonce"]
    content = orjson.dumps({"nonce": nonce})
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(content), content)


async def _answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the first request, then close on the second without a byte: a stale keep-alive."""
    for answered in (True, False):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length:"))[15:])
        body = await reader.readexactly(length)
        if answered:
            writer.write(_ok(body))
            await writer.drain()
    writer.close()


async def test_a_call_closed_on_a_kept_alive_connection_is_told_from_a_refused_one() -> None:
    server = await asyncio.start_server(_answer_once_then_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with socket.socket() as unused:  # bound, never listening: connecting is refused
        unused.bind(("127.0.0.1", 0))
        refused = unused.getsockname()[1]
        async with server:
            served = Load([f"http://127.0.0.1:{port}"], total=2, rate=1000, concurrency=1, wait=1)
            gone = Load([f"http://127.0.0.1:{refused}"], total=1, rate=1000, concurrency=1, wait=1)
            outcomes = [*await served.run(), *await gone.run()]

    assert [(o.status, o.detail) for o in outcomes] == [
        (200, ""),
        (CONNECTION_ERROR, "IncompleteReadError on a kept-alive connection"),
        (CONNECTION_ERROR, "ConnectionRefusedError on a new connection"),
    ]
    figures = Figures("load", "a server that hangs up")
    figures.add_outcomes(outcomes)
    assert figures.causes == {
        "0: IncompleteReadError on a kept-alive connection": 1,
        "0: ConnectionRefusedError on a new connection": 1,
    }

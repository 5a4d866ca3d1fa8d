"""The chaos load's handling of connections that end without an answer."""

from __future__ import annotations

import asyncio
import socket

import orjson

from chaos.load import CONNECTION_ERROR, Load
from chaos.report import Figures


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line for line in head.split(b"\r\n") if line.startswith(b"content-length:"))[15:])
    return await reader.readexactly(length)


def _echo(body: bytes) -> bytes:
    content = orjson.dumps({"nonce": orjson.loads(body)["nonce"]})
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(content), content)


async def _answer_once_then_hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer a connection's first request and close it at the next: a keep-alive closed under a call."""
    writer.write(_echo(await _read_request(reader)))
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    writer.close()


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await _read_request(reader)
    writer.close()


async def _run(handler: object, total: int) -> Load:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)  # type: ignore[arg-type]
    async with server:
        load = Load(
            [f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"],
            total=total,
            rate=1000,
            concurrency=1,
            wait=1,
        )
        await load.run()
    return load


async def test_a_call_whose_kept_alive_connection_was_closed_under_it_is_sent_again() -> None:
    load = await _run(_answer_once_then_hang_up, total=3)

    assert [o.status for o in load.outcomes] == [200, 200, 200]
    assert all(o.own_reply for o in load.outcomes)
    assert load.resent == 2  # every call after the first met a connection closed under it


async def test_a_call_with_no_answer_records_how_its_connection_failed() -> None:
    hung_up = await _run(_never_answer, total=1)
    with socket.socket() as unused:  # bound, never listening: connecting is refused
        unused.bind(("127.0.0.1", 0))
        refused = Load(
            [f"http://127.0.0.1:{unused.getsockname()[1]}"], total=1, rate=1000, concurrency=1, wait=1
        )
        await refused.run()
    outcomes = [*hung_up.outcomes, *refused.outcomes]

    assert [(o.status, o.detail) for o in outcomes] == [
        (CONNECTION_ERROR, "IncompleteReadError on a new connection"),
        (CONNECTION_ERROR, "ConnectionRefusedError on a new connection"),
    ]
    assert hung_up.resent == 0  # a new connection that ends unanswered is the server's doing
    figures = Figures("load", "a server that hangs up, one that refuses")
    figures.add_outcomes(outcomes)
    assert figures.causes == {
        "0: IncompleteReadError on a new connection": 1,
        "0: ConnectionRefusedError on a new connection": 1,
    }

"""The HTTP floor's app: each request's body back, whatever the chunks it arrived in."""

from __future__ import annotations

from starlette.types import Message

from bench.httpfloor import echo_app


async def _call(scope_type: str, chunks: list[bytes]) -> list[Message]:
    messages = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await echo_app({"type": scope_type}, receive, send)
    return sent


async def test_the_body_comes_back_with_its_length() -> None:
    start, body = await _call("http", [b'{"nonce":', b'"abc"', b"}"])
    assert start["status"] == 200
    assert (b"content-length", b"15") in start["headers"]
    assert body == {"type": "http.response.body", "body": b'{"nonce":"abc"}'}


async def test_an_empty_request_gets_an_empty_200() -> None:
    start, body = await _call("http", [b""])
    assert start["status"] == 200
    assert body["body"] == b""


async def test_lifespan_is_ignored() -> None:
    assert await _call("lifespan", []) == []

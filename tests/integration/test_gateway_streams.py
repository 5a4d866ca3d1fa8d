"""Streaming topics over SSE and WebSocket: the real gateway app, a real broker, real uvicorn."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
import websockets
from confluent_kafka import Producer
from fastapi import FastAPI

from gateway.app import create_app
from kafkarpc import protocol

from .harness import Topics, gateway_of, serving


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for value in values:
        producer.produce(topic, value, key=b"k")
    assert producer.flush(10) == 0


def streaming_app(topics: Topics, max_streams: int = 4) -> FastAPI:
    return create_app(
        topics.settings(stream_topics=[topics.events], max_streams=max_streams), topics.kafka_settings()
    )


async def test_sse_streams_records_produced_after_connecting(topics: Topics) -> None:
    bootstrap = topics.kafka.bootstrap_servers
    produce(bootstrap, topics.events, [b"before"])
    async with (
        serving(streaming_app(topics)) as url,
        httpx.AsyncClient(base_url=url, timeout=20) as http,
        http.stream("GET", f"/stream/{topics.events}") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith(": streaming")  # sent once positioned
        await asyncio.to_thread(produce, bootstrap, topics.events, [b'{"n": 1}', b"\xff\xfe"])
        events = []
        async for line in lines:
            if line.startswith("data: "):
                events.append(orjson.loads(line.removeprefix("data: ")))
            if len(events) == 2:
                break
    # One key, so one partition and produce order; "before" preceded the stream and is not replayed.
    assert [event.get("value") or event["value_base64"] for event in events] == ['{"n": 1}', "//4="]
    assert all(event["topic"] == topics.events and event["key"] == "k" for event in events)


async def test_streams_outside_the_allow_list_are_404_problems(topics: Topics) -> None:
    async with serving(streaming_app(topics)) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.get("/stream/__consumer_offsets")
    assert response.status_code == 404
    assert response.headers["content-type"] == protocol.PROBLEM_JSON


async def test_websocket_streams_records_and_frees_its_slot_on_disconnect(topics: Topics) -> None:
    app = streaming_app(topics, max_streams=1)
    async with serving(app) as url:
        address = url.removeprefix("http://")
        for round_trip in range(2):  # the second connection needs the first one's slot back
            async with websockets.connect(f"ws://{address}/ws/{topics.events}") as socket:
                await asyncio.to_thread(
                    produce, topics.kafka.bootstrap_servers, topics.events, [b"hi %d" % round_trip]
                )
                event = orjson.loads(await asyncio.wait_for(socket.recv(), 20))
                assert event["value"] == f"hi {round_trip}"
            await _released(app)
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(f"ws://{address}/ws/{topics.requests}"):
                pass
    assert refused.value.response.status_code == 403


async def _released(app: FastAPI) -> None:
    # The server notices the close on its own task; no event exposes it, so poll, bounded.
    streams = gateway_of(app).streams
    async with asyncio.timeout(10):
        while streams.open_streams:  # noqa: ASYNC110
            await asyncio.sleep(0.01)

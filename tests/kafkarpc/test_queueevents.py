"""`kafkarpc.queueevents`, the seam into confluent-kafka's private ``Handle`` layout, and the
`Fetcher` that fetches on the loop through it.

Real librdkafka, no broker: a consumer puts its statistics on its queue every
`STATISTICS_MS`, and those must wake the descriptor (its bootstrap server refuses connections,
whose error events may come before the wake-ups are on, so they are no signal). These tests
fail, rather than skip, when a new confluent-kafka release (a moved lock) or another layout
breaks the seam.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from kafkarpc import queueevents
from kafkarpc.clients import ConfluentClients, ConsumerClient
from kafkarpc.fetcher import Fetcher
from kafkarpc.queueevents import TESTED, queue_events

LOCK = Path(__file__).parents[2] / "uv.lock"
STATISTICS_MS = 50
"""How often librdkafka queues the consumer's statistics."""
WAKE_SECONDS = 30.0
"""Bound on the next statistics event (due within `STATISTICS_MS`)."""


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def consumer(port: int, **config: Any) -> ConsumerClient:
    """A consumer built as production builds them."""
    return ConfluentClients().consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{port}",
            "group.id": "seam",
            "client.id": "seam-test",
            "statistics.interval.ms": STATISTICS_MS,
            **config,
        }
    )


def test_the_locked_confluent_kafka_release_is_the_tested_one() -> None:
    locked = LOCK.read_text().split('name = "confluent-kafka"\nversion = "', 1)[1].split('"', 1)[0]
    assert locked in TESTED, (
        f"uv.lock moved confluent-kafka to {locked}: test the seam, then add it to TESTED"
    )
    assert metadata.version("confluent-kafka") in TESTED


def test_librdkafka_wakes_the_descriptor_when_the_consumer_queue_gets_an_event(refused_port: int) -> None:
    statistics: list[str] = []
    client = consumer(refused_port, stats_cb=statistics.append)
    events = queue_events(client)
    assert events is not None
    try:
        client.consume(10, 0)  # whatever came before the wake-ups were on
        statistics.clear()
        deadline = time.monotonic() + WAKE_SECONDS
        while not statistics:  # each round waits for a wake-up (log lines may come first)
            readable, _, _ = select.select([events.fd], [], [], max(0.0, deadline - time.monotonic()))
            assert readable == [events.fd], "no wake-up"
            events.drain()
            assert client.consume(10, 0) == []  # events go to their callbacks, not to the caller
    finally:
        events.close()
        events.close()  # idempotent
        client.close()  # returns: the queue handle was released


def test_other_clients_and_closed_consumers_get_no_wake_ups(refused_port: int) -> None:
    closed = consumer(refused_port)
    closed.close()
    assert queue_events(closed) is None
    assert queue_events(object()) is None
    producer = confluent_kafka.Producer({"bootstrap.servers": f"127.0.0.1:{refused_port}"})
    assert queue_events(producer) is None


async def test_a_fetcher_on_the_loop_takes_over_after_setup_and_closes_off_it(refused_port: int) -> None:
    served_on: list[str] = []
    served = asyncio.Event()

    def on_statistics(_: str) -> None:
        served_on.append(threading.current_thread().name)
        served.set()  # only wakes the loop when called on it: otherwise the wait below times out

    client = consumer(refused_port, stats_cb=on_statistics)
    fetcher = Fetcher(client, name="seam-fetch", on_batch=lambda records, at: None, on_loop=True)
    assert fetcher.on_loop
    set_up_on: list[str] = []

    def setup(_: ConsumerClient) -> None:
        set_up_on.append(threading.current_thread().name)

    fetcher.start(setup)
    await fetcher.started
    assert (set_up_on, fetcher.alive) == (["seam-fetch"], True)
    served_on.clear()  # any served by the thread's setup
    served.clear()
    # The statistics events wake the loop, whose fetch serves the callback.
    await asyncio.wait_for(served.wait(), WAKE_SECONDS)
    assert set(served_on) == {threading.current_thread().name}
    await fetcher.close()
    assert not fetcher.alive
    with pytest.raises(RuntimeError):
        client.consume(1, 0)  # closed


async def test_a_fetcher_stopped_during_setup_closes_without_fetching(refused_port: int) -> None:
    client = consumer(refused_port)
    release = threading.Event()
    fetcher = Fetcher(client, name="seam-stop", on_batch=lambda records, at: None, on_loop=True)

    def setup(_: ConsumerClient) -> None:
        release.wait()

    fetcher.start(setup)
    fetcher.stop()
    release.set()
    await fetcher.close()
    assert fetcher.started.done()
    assert not fetcher.alive
    with pytest.raises(RuntimeError):
        client.consume(1, 0)


async def test_an_untested_confluent_kafka_release_keeps_the_fetch_thread(
    refused_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("importlib.metadata.version", lambda _: "9.0.0")
    queueevents._librdkafka.cache_clear()
    client = consumer(refused_port)
    try:
        assert queue_events(client) is None
        assert not Fetcher(
            client, name="seam-untested", on_batch=lambda records, at: None, on_loop=True
        ).on_loop
    finally:
        client.close()
        queueevents._librdkafka.cache_clear()  # the tested release again, for later tests

"""`kafkarpc.queueevents`, the seam into confluent-kafka's private ``Handle`` layout, and the
`Fetcher` that fetches on the loop through it.

Real librdkafka, no broker: a consumer whose bootstrap server refuses connections puts error
events on its queue, and those must wake the descriptor. These tests fail, rather than skip,
when a new confluent-kafka release (a moved lock) or another layout breaks the seam.
"""

from __future__ import annotations

import asyncio
import select
import socket
import threading
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest

from kafkarpc.clients import ConfluentClients, ConsumerClient
from kafkarpc.fetcher import Fetcher
from kafkarpc.queueevents import TESTED, queue_events

LOCK = Path(__file__).parents[2] / "uv.lock"
WAKE_SECONDS = 30.0
"""Bound on the first error event of a refused connection (librdkafka reports it in well under a second)."""


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound, never listening."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


def consumer(port: int, **config: Any) -> ConsumerClient:
    """A consumer built as production builds them."""
    return ConfluentClients().consumer(
        {"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "seam", "client.id": "seam-test", **config}
    )


def test_the_locked_confluent_kafka_release_is_the_tested_one() -> None:
    locked = LOCK.read_text().split('name = "confluent-kafka"\nversion = "', 1)[1].split('"', 1)[0]
    assert locked in TESTED, (
        f"uv.lock moved confluent-kafka to {locked}: test the seam, then add it to TESTED"
    )
    assert metadata.version("confluent-kafka") in TESTED


def test_librdkafka_wakes_the_descriptor_when_the_consumer_queue_gets_an_event(refused_port: int) -> None:
    errors: list[confluent_kafka.KafkaError] = []
    client = consumer(refused_port, error_cb=errors.append)
    events = queue_events(client)
    assert events is not None
    try:
        readable, _, _ = select.select([events.fd], [], [], WAKE_SECONDS)
        assert readable == [events.fd]
        events.drain()
        assert client.consume(10, 0) == []  # error events go to error_cb, not to the caller
        assert errors, "the wake-up was for the refused connection's error event"
        assert select.select([events.fd], [], [], 0)[0] == []  # drained
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

    def on_error(_: confluent_kafka.KafkaError) -> None:
        served_on.append(threading.current_thread().name)
        served.set()  # only wakes the loop when called on it: otherwise the wait below times out

    client = consumer(refused_port, error_cb=on_error)
    fetcher = Fetcher(client, name="seam-fetch", on_batch=lambda records, at: None, on_loop=True)
    assert fetcher.on_loop
    set_up_on: list[str] = []

    def setup(_: ConsumerClient) -> None:
        set_up_on.append(threading.current_thread().name)

    fetcher.start(setup)
    await fetcher.started
    assert (set_up_on, fetcher.alive) == (["seam-fetch"], True)
    # The refused connection's error events wake the loop, whose fetch serves the callback.
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

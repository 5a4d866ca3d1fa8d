"""The worker announces its methods in the catalog at start, on every heartbeat, and withdraws them."""

from __future__ import annotations

from kafkarpc.catalog import Entry
from tests.fakekafka import FakeKafka
from tests.workers.conftest import CATALOG, serving, settings
from workers import HandlerRegistry, Request


def registry() -> HandlerRegistry:
    registry = HandlerRegistry()

    @registry.handler("things.get", routes=["GET /things/{thing_id}"])
    async def get(thing_id: int) -> dict[str, int]:
        """One thing."""
        return {"thing_id": thing_id}

    @registry.handler("raw")
    async def raw(request: Request) -> bytes:
        return request.body

    return registry


async def test_the_entry_is_published_at_start_renewed_and_withdrawn_at_stop(broker: FakeKafka) -> None:
    worker_settings = settings(instance="host-1", catalog_heartbeat=0.05)
    async with serving(broker, registry(), worker_settings):
        await broker.wait_for(lambda: len(broker.records(CATALOG)) >= 2)  # the start, then a heartbeat
        first, second = broker.records(CATALOG)[:2]
    assert first.key() == b"rpc-workers/host-1"
    entry = Entry.from_record(first.value() or b"")
    assert (entry.group, entry.instance) == ("rpc-workers", "host-1")
    assert [method.method for method in entry.methods] == ["things.get", "raw"]
    assert entry.methods[0].routes == ("GET /things/{thing_id}",)
    assert entry.methods[0].summary == "One thing."
    assert all(method.cancellable and not method.streaming for method in entry.methods)
    assert Entry.from_record(second.value() or b"").heartbeat_ms >= entry.heartbeat_ms
    last = broker.records(CATALOG)[-1]
    assert (last.key(), last.value()) == (b"rpc-workers/host-1", None)


async def test_no_catalog_topic_means_no_announcement(broker: FakeKafka) -> None:
    async with serving(broker, registry(), settings(catalog_topic="")) as h:
        assert h.worker.ready.is_set()
    assert broker.records(CATALOG) == []

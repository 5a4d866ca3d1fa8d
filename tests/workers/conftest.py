"""Fixtures for the worker unit tier: an in-memory broker and a Worker running on it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kafkarpc.clients import Message
from kafkarpc.connection import KafkaSettings
from kafkarpc.protocol import Cancel, CancelReason, Reply, Request
from kafkarpc.tracing import Tracer
from tests.fakekafka import FakeConsumer, FakeKafka
from workers.registry import HandlerRegistry
from workers.runtime import Worker
from workers.settings import WorkerSettings

REQUESTS = "requests"
REPLIES = "replies"
DLT = "requests.dlt"
CATALOG = "rpc-catalog"


@pytest.fixture
def broker() -> FakeKafka:
    return FakeKafka({REQUESTS: 3, REPLIES: 2, DLT: 1, CATALOG: 1})


def settings(**overrides: Any) -> WorkerSettings:
    """Worker settings for tests: ephemeral monitoring port on loopback."""
    values: dict[str, Any] = {"metrics_host": "127.0.0.1", "metrics_port": 0, "drain_timeout": 5.0}
    return WorkerSettings(**(values | overrides))


class Harness:
    """A worker on the fake broker, plus handles on its fake clients."""

    def __init__(
        self,
        broker: FakeKafka,
        registry: HandlerRegistry,
        worker_settings: WorkerSettings,
        tracer: Tracer | None = None,
    ) -> None:
        self.broker = broker
        self.worker = Worker(worker_settings, KafkaSettings(), registry, clients=broker, tracer=tracer)

    @property
    def consumer(self) -> FakeConsumer:
        return self.broker.consumers[-1]

    def committed(self, partition: int, topic: str = REQUESTS) -> int | None:
        return self.broker.committed.get((self.worker.settings.group_id, topic, partition))

    def replies(self) -> dict[str, Reply]:
        return {
            reply.correlation_id: reply
            for reply in (Reply.from_record(m.value(), m.headers()) for m in self.broker.records(REPLIES))
        }

    def dead_letters(self) -> list[Message]:
        return self.broker.records(DLT)

    def stream(self, correlation_id: str) -> list[Message]:
        """The reply records of one request, partition by partition, in offset order."""
        return [m for m in self.broker.records(REPLIES) if m.key() == correlation_id.encode()]

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the worker's metrics; 0 when it has none yet."""
        return self.worker.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def serving(
    broker: FakeKafka,
    registry: HandlerRegistry,
    worker_settings: WorkerSettings | None = None,
    tracer: Tracer | None = None,
) -> AsyncIterator[Harness]:
    """Run a Worker on ``broker`` until the block ends, then shut it down (drain + commit)."""
    harness = Harness(broker, registry, worker_settings or settings(), tracer)
    task = asyncio.create_task(harness.worker.serve())
    try:
        async with asyncio.timeout(10):
            await harness.worker.ready.wait()
        yield harness
    finally:
        harness.worker.shutdown()
        await asyncio.wait_for(task, 30)


def request(
    method: str,
    body: bytes = b"",
    *,
    deadline_in: float = 10.0,
    reply_to: str = REPLIES,
    reply_partition: int | None = 1,
    extra: list[tuple[str, bytes]] | None = None,
) -> Request:
    """A well-formed request."""
    return Request(
        correlation_id=uuid.uuid4().hex,
        reply_to=reply_to,
        reply_partition=reply_partition,
        method=method,
        deadline_ms=int((time.time() + deadline_in) * 1000),
        body=body,
        content_type="application/json",
        extra=extra or [],
    )


def send(broker: FakeKafka, req: Request, partition: int = -1) -> Message:
    """Produce ``req`` to the requests topic."""
    return broker.append(
        REQUESTS, req.body, key=req.correlation_id.encode(), headers=req.headers(), partition=partition
    )


def cancel(
    broker: FakeKafka, req: Request, partition: int, reason: str = CancelReason.DISCONNECTED
) -> Message:
    """Produce the cancel record for ``req``, after it in its partition (as the gateway does)."""
    headers = Cancel(req.correlation_id, reason).headers()
    return broker.append(REQUESTS, b"", key=req.correlation_id.encode(), headers=headers, partition=partition)

"""Shared pieces of the gateway integration tests: per-test topics, an in-process gateway
served by uvicorn, the real worker runtime, and handlers that hold requests on demand."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import orjson
import uvicorn
from confluent_kafka import Consumer, TopicPartition
from fastapi import FastAPI

from devstack import ExistingKafka, KafkaCluster
from devstack.topics import COMPACTED
from gateway.assembly import Gateway
from gateway.httpprotocol import gateway_http_protocol
from gateway.settings import GatewaySettings
from kafkarpc import protocol
from kafkarpc.connection import KafkaSettings
from workers import examples
from workers.registry import HandlerRegistry
from workers.response import Response
from workers.runtime import Worker
from workers.settings import WorkerSettings

Kafka = KafkaCluster | ExistingKafka
REQUEST_PARTITIONS = 3
REPLY_PARTITIONS = 4


class Topics:
    """Per-test topics, so tests never see each other's records."""

    def __init__(self, kafka: Kafka, unique: str) -> None:
        self.kafka = kafka
        self.unique = unique
        self.requests = f"requests-{unique}"
        self.replies = f"replies-{unique}"
        self.events = f"events-{unique}"
        self.catalog = f"catalog-{unique}"
        kafka.create_topics({self.catalog: 1}, COMPACTED)
        kafka.create_topics(
            {
                self.requests: REQUEST_PARTITIONS,
                self.replies: REPLY_PARTITIONS,
                f"{self.requests}.dlt": 1,
                self.events: 2,
            }
        )

    def settings(self, **overrides: Any) -> GatewaySettings:
        values: dict[str, Any] = {
            "request_topic": self.requests,
            "reply_topic": self.replies,
            "catalog_topic": self.catalog,
            "default_timeout": 10.0,
            "max_timeout": 20.0,
            "publish_topics": [self.events, f"missing-{self.unique}"],
            "forward_headers": ["x-tenant"],
            **overrides,
        }
        return GatewaySettings(**values)

    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers)

    def high_watermarks(self, topic: str, partitions: int) -> list[int]:
        consumer = Consumer({"bootstrap.servers": self.kafka.bootstrap_servers, "group.id": self.unique})
        try:
            return [
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in range(partitions)
            ]
        finally:
            consumer.close()

    def records(self, topic: str, partitions: int) -> list[Any]:
        consumer = Consumer({"bootstrap.servers": self.kafka.bootstrap_servers, "group.id": self.unique})
        highs = self.high_watermarks(topic, partitions)
        try:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            records: list[Any] = []
            while len(records) < sum(highs):
                records.extend(m for m in consumer.consume(500, timeout=10) if m.error() is None)
            return records
        finally:
            consumer.close()


@contextlib.asynccontextmanager
async def listening(app: FastAPI, http: str = "gateway") -> AsyncIterator[str]:
    """uvicorn in this loop on a socket bound up front; yields the base URL at once.

    The socket listens before uvicorn starts, so clients may connect immediately: the
    kernel queues them until the server accepts. ``http`` is the gateway's own protocol
    (head limit, one write per response, disconnect future) or uvicorn's ``h11``/``httptools``.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    protocol: Any = gateway_http_protocol(GatewaySettings().max_header_bytes) if http == "gateway" else http
    server = uvicorn.Server(uvicorn.Config(app, http=protocol, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def serving(app: FastAPI, http: str = "gateway") -> AsyncIterator[str]:
    """`listening`, yielding the base URL once the gateway accepts requests."""
    async with listening(app, http) as url:
        await asyncio.wait_for(app.state.started.wait(), 60)
        yield url


@contextlib.asynccontextmanager
async def working(
    topics: Topics,
    registry: HandlerRegistry = examples.registry,
    *,
    ready: bool = True,
    kafka: KafkaSettings | None = None,
    **overrides: Any,
) -> AsyncIterator[Worker]:
    """The real worker runtime in this loop, until the block ends; ``ready``: once it is ready.

    ``kafka`` replaces the topics' connection (a secured cluster's principal); ``overrides``
    replace `WorkerSettings` fields.
    """
    values: dict[str, Any] = {
        "group_id": f"workers-{topics.unique}",
        "request_topic": topics.requests,
        "reply_topics": frozenset({topics.replies}),
        "dead_letter_topic": f"{topics.requests}.dlt",
        "catalog_topic": topics.catalog,
        "catalog_heartbeat": 1.0,
        "metrics_port": 0,
        "concurrency": 128,
        **overrides,
    }
    worker = Worker(WorkerSettings(**values), kafka or topics.kafka_settings(), registry)
    task = asyncio.create_task(worker.serve())
    try:
        if ready:
            await asyncio.wait_for(worker.ready.wait(), 60)
        yield worker
    finally:
        worker.shutdown()
        await task


def gateway_of(app: FastAPI) -> Gateway:
    gateway: Gateway = app.state.gateway
    return gateway


def metric(app: FastAPI, name: str, **labels: str) -> float:
    value = gateway_of(app).metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Gate:
    """Handlers that hold requests until released; ``arrived`` fires at a count."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.registry = HandlerRegistry()
        self.seen: list[protocol.Request] = []
        self.registry.handler("hold")(self.hold)
        self.registry.handler("headers")(self.headers)

    async def hold(self, request: protocol.Request) -> Response:
        self.count += 1
        if self.count >= self.expected:
            self.arrived.set()
        await self.release.wait()
        return Response(request.body, 200, request.content_type)

    async def headers(self, request: protocol.Request) -> Response:
        self.seen.append(request)
        body = {
            "extra": [[k, v.decode()] for k, v in request.extra],
            "trace": [[k, v.decode()] for k, v in request.trace],
        }
        return Response(orjson.dumps(body), 200, "application/json")

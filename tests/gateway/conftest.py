"""Fixtures: the real gateway app over the in-memory cluster, driven through httpx."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.access import AccessSettings
from gateway.app import create_app
from gateway.assembly import Gateway
from gateway.settings import GatewaySettings
from kafkarpc.connection import KafkaSettings
from kafkarpc.tracing import Tracer
from tests.fakekafka import FakeKafka


@dataclass
class Harness:
    app: FastAPI
    http: httpx.AsyncClient
    cluster: FakeKafka

    @property
    def gateway(self) -> Gateway:
        return self.app.state.gateway  # type: ignore[no-any-return]

    def metric(self, name: str, **labels: str) -> float:
        value = self.gateway.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


CATALOG = "rpc-catalog"


@pytest.fixture
def cluster() -> FakeKafka:
    return FakeKafka({"requests": 2, "replies": 3, "events": 1, CATALOG: 1})


def gateway_settings(**overrides: Any) -> GatewaySettings:
    """Settings for a gateway whose test workers (`FakeWorker`) announce no catalog: forward all."""
    return GatewaySettings(**{"unknown_methods": "forward", **overrides})


@pytest.fixture
def settings() -> GatewaySettings:
    return gateway_settings(
        default_timeout=2.0, max_timeout=5.0, max_pending=50, publish_topics=["events", "absent"]
    )


@contextlib.asynccontextmanager
async def running(
    settings: GatewaySettings,
    cluster: FakeKafka,
    *,
    wait: bool = True,
    access: AccessSettings | None = None,
    tracer: Tracer | None = None,
) -> AsyncIterator[Harness]:
    """The app with its lifespan running (httpx's ASGITransport does not run it)."""
    kafka = KafkaSettings(bootstrap_servers="fake:9092")
    app = create_app(settings, kafka, cluster, access=access, tracer=tracer)
    async with app.router.lifespan_context(app):
        if wait:
            await asyncio.wait_for(app.state.gateway.client.started.wait(), 5)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            yield Harness(app, http, cluster)


@pytest.fixture
async def harness(settings: GatewaySettings, cluster: FakeKafka) -> AsyncIterator[Harness]:
    async with running(settings, cluster) as h:
        yield h

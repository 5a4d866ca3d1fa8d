"""Baseline B1: HTTP echo through the gateway's own app and endpoint, with no Kafka.

The app is the gateway's `GatewayAPI` (same FastAPI options, problem+json handlers,
``/rpc/`` served by the same `RpcEndpoint`: method check, caller-header admission,
size-limited body read, metrics, pass-through response with the correlation header),
served by the gateway's `GatewayServer`. Only the `Caller` differs: `EchoCaller`
returns the body where the gateway would produce it and wait for the reply, so
S - B1 - B2 is what joining HTTP to Kafka costs.
"""

from __future__ import annotations

import asyncio

from starlette.responses import Response

from gateway import problems
from gateway.app import GatewayAPI
from gateway.correlation import CorrelationIds
from gateway.headers import HeaderPolicy
from gateway.metrics import GatewayMetrics
from gateway.parts import PartStream
from gateway.rpc import RpcEndpoint
from gateway.settings import GatewaySettings
from kafkarpc import protocol


class EchoCaller:
    """A `gateway.rpc.Caller` that answers every call with its own body."""

    def ensure_accepting(self) -> None:
        """Always accepting."""

    def timeout_for(self, wait: int | None) -> tuple[float, bool]:
        """No reply is awaited, so any wait is honoured."""
        return float(wait or 0), wait is not None

    async def call(
        self,
        correlation_id: str,
        method: str,
        body: bytes,
        wait: float,
        *,
        content_type: str,
        trace: protocol.Headers,
        extra: protocol.Headers,
        timing: str,
        disconnected: asyncio.Future[None] | None,
        route: str,
        path_params: dict[str, str],
        query: str,
        caller: protocol.Identity | None,
        stream_for: float | None,
        lifetime: float | None,
    ) -> protocol.Reply:
        """The body back, as a 200 reply."""
        return protocol.Reply(correlation_id, 200, body, content_type)

    def cancel(self, correlation_id: str, reason: str) -> None:
        """Nothing runs, so nothing to cancel."""

    def parts(self, correlation_id: str) -> PartStream | None:
        """Echo replies are never streamed."""
        return None

    def position(self) -> tuple[int, int]:
        """No reply topic (respond-async is off: the endpoint has no result locations)."""
        return 0, 0


def create_echo_app(settings: GatewaySettings | None = None) -> GatewayAPI:
    """The B1 app; ``GET /healthz`` answers once it serves."""
    settings = settings or GatewaySettings()
    app = GatewayAPI(title="B1 echo", docs_url=None, redoc_url=None, openapi_url=None)
    problems.install(app)
    app.rpc = RpcEndpoint(
        ids=CorrelationIds(),
        metrics=GatewayMetrics(settings.max_timeout, settings.metric_methods_limit),
        headers=HeaderPolicy(settings.forward_headers, settings.max_forward_header_bytes),
        body_limit=settings.body_limit({}),
        caller=EchoCaller(),
        timing=False,
    )

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return app

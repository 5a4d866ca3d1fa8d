"""Baseline B1: HTTP echo through the gateway's FastAPI HTTP layer, with no Kafka.

The app is built like `gateway.app.create_app` (same FastAPI options, the same
problem+json handlers) and its ``POST /rpc/{method}`` does the gateway route's
HTTP-side work: method-name check, caller-header admission (`HeaderPolicy`), the
size-limited body read (`gateway.routes.read_body`) and the pass-through response with
the correlation header. Only the Kafka round trip is replaced by returning the body,
so S - B1 - B2 is what joining HTTP to Kafka costs.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway import problems
from gateway.errors import BadRequestError
from gateway.headers import HeaderPolicy
from gateway.routes import read_body
from gateway.settings import GatewaySettings
from workers import protocol


def create_echo_app(settings: GatewaySettings | None = None) -> FastAPI:
    """The B1 app; ``GET /healthz`` answers once it serves."""
    settings = settings or GatewaySettings()
    policy = HeaderPolicy(settings.forward_headers, settings.max_forward_header_bytes)
    limit = settings.body_limit({})
    router = APIRouter()

    @router.post("/rpc/{method}")
    async def rpc(method: str, request: Request) -> Response:
        if not protocol.valid_method(method):
            raise BadRequestError(f"{method!r} is not a valid method name")
        admitted = policy.admit(request.headers.raw)
        body = await read_body(request, limit)
        response = Response(body, headers={"content-type": admitted.content_type})
        response.headers[problems.CORRELATION_HEADER] = secrets.token_hex(16)
        return response

    @router.get("/healthz")
    async def healthz() -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    app = FastAPI(title="B1 echo", docs_url=None, redoc_url=None, openapi_url=None)
    problems.install(app)
    app.include_router(router)
    return app


async def raw_echo_app(scope: Scope, receive: Receive, send: Send) -> None:
    """B1a: the same echo as a bare ASGI callable, the floor of uvicorn itself.

    B1 minus B1a is what FastAPI and the gateway's HTTP-side checks cost per request.
    """
    if scope["type"] != "http":
        return  # lifespan: nothing to start
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})

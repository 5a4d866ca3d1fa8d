"""`RpcEndpoint`: ``POST /rpc/{method}``, the hot path, as a bare ASGI app.

The gateway's app sends every ``/rpc/`` request here before FastAPI's middleware,
routing and dependency solving, which cost more CPU per request than the endpoint's
own work (docs/PERFORMANCE.md). Every other route stays with FastAPI, and the
endpoint is still described in ``/openapi.json`` (`OPENAPI_PATH`).

Per request: method check, caller-header admission, the size-limited body read, one
`Caller.call` and the pass-through response, all answered with problem+json on
failure and counted in the same metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from kafkarpc import protocol, stamps

from . import problems
from .access import IDENTITY
from .errors import (
    BadRequestError,
    ClientDisconnectedError,
    GatewayError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    ReplyTimeout,
    UnknownMethodError,
    WorkerFailedError,
)
from .headers import CONTENT_TYPE_MAX
from .httpprotocol import CONNECTION_CLOSED
from .timing import server_timing

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import Receive, Scope, Send

    from .access import FairShare
    from .catalog import Catalog, Match
    from .correlation import CorrelationIds
    from .headers import HeaderPolicy
    from .metrics import GatewayMetrics

log = logging.getLogger(__name__)

PREFIX = "/rpc/"


def serves(path: str) -> bool:
    """Whether ``path`` is ``/rpc/{method}`` with a non-empty method and no further segment."""
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and path.find("/", len(PREFIX)) < 0


# Statuses whose responses must not carry a body (RFC 9110 §6.4.1).
BODYLESS = frozenset({204, 304})
_CORRELATION_HEADER = problems.CORRELATION_HEADER.encode()
_UNSHARED = contextlib.nullcontext()


class Caller(Protocol):
    """The Kafka side of the endpoint: `RequestReplyClient` (or the benchmark's echo)."""

    def ensure_accepting(self) -> None:
        """Raise a `GatewayError` unless requests are accepted now."""

    def timeout_for(self, wait: int | None) -> tuple[float, bool]:
        """Seconds to wait given ``Prefer: wait``, and whether the preference was honoured."""

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
    ) -> protocol.Reply:
        """The worker's reply to ``method`` with ``body``, within ``wait`` seconds."""


class RpcEndpoint:
    """Serves ``POST /rpc/{method}``; one instance per app, built once Kafka clients exist."""

    def __init__(
        self,
        *,
        ids: CorrelationIds,
        metrics: GatewayMetrics,
        headers: HeaderPolicy,
        body_limit: int,
        caller: Caller,
        timing: bool,
        catalog: Catalog | None = None,
        share: FairShare | None = None,
    ) -> None:
        self._ids = ids
        self._metrics = metrics
        self._headers = headers
        self._body_limit = body_limit
        self._caller = caller
        self._timing = timing
        self._catalog = catalog
        """Methods not in it are 404 once it is read; None forwards every method."""
        self._share = share
        """Caps each authenticated caller's pending requests; None without authentication."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await problems.from_error(MethodNotAllowedError("use POST", allowed=("POST",)))(
                scope, receive, send
            )
            return
        try:
            await self._serve(scope["path"][len(PREFIX) :], scope, receive, send)
        except Exception as exc:  # the framework's last-resort handler is bypassed here
            await problems.crash(exc)(scope, receive, send)

    async def route(self, match: Match, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve a request a catalog route matched: its method, with the route's path parameters."""
        try:
            await self._serve(match.method or "", scope, receive, send, match)
        except Exception as exc:  # the framework's last-resort handler is bypassed here
            await problems.crash(exc)(scope, receive, send)

    async def _serve(
        self, method: str, scope: Scope, receive: Receive, send: Send, match: Match | None = None
    ) -> None:
        started = time.perf_counter()
        timing = stamps.stamp("", "http_in") if self._timing else ""
        correlation_id = self._ids.new()
        label = self._metrics.method_label(method)
        applied: bytes | None = None
        try:
            if match is not None and match.method is None:
                allowed = ", ".join(match.allowed)
                raise MethodNotAllowedError(f"{scope['path']} takes {allowed}", allowed=match.allowed)
            if not protocol.valid_method(method):
                raise BadRequestError(f"{method!r} is not a valid method name")
            catalog = self._catalog
            if catalog is not None and method not in catalog.served and catalog.ready.is_set():
                raise UnknownMethodError(f"no worker serves method {method!r}")
            self._caller.ensure_accepting()
            admitted = self._headers.admit(scope["headers"])
            body = await read_body(receive, self._body_limit, admitted.content_length)
            timeout, honoured = self._caller.timeout_for(admitted.wait)
            applied = f"wait={admitted.wait}".encode() if honoured else None
            caller: protocol.Identity | None = scope.get(IDENTITY)
            share = _UNSHARED if caller is None or self._share is None else self._share.held(caller.subject)
            with share, disconnection(scope, receive) as disconnected:
                reply = await self._caller.call(
                    correlation_id,
                    method,
                    body,
                    timeout,
                    content_type=admitted.content_type,
                    trace=admitted.trace,
                    extra=admitted.extra,
                    timing=timing,
                    disconnected=disconnected,
                    route="" if match is None or match.route is None else str(match.route),
                    path_params={} if match is None else match.params,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    caller=caller,
                )
            status, body, headers = reply_parts(reply)
            if reply.response_headers:
                headers += self._headers.for_caller(reply.response_headers, self._dropped)
            headers.append((_CORRELATION_HEADER, correlation_id.encode()))
            outcome = "ok" if status < 400 else "rejected"
        except GatewayError as error:
            outcome = error.outcome
            if isinstance(error, ReplyTimeout):
                self._metrics.timeouts.labels(label).inc()
            log.info(
                "rpc failed",
                extra={"method": method, "outcome": outcome, "status": error.status, "detail": error.detail},
            )
            problem = problems.from_error(error)  # carries the correlation id already
            status, body, headers = problem.status_code, bytes(problem.body), problem.raw_headers
            reply = None
        self._metrics.requests.labels(label, outcome).inc()
        self._metrics.request_duration.labels(label).observe(time.perf_counter() - started)
        if applied is not None:
            headers.append((b"preference-applied", applied))
        if self._timing and reply is not None and reply.timing:
            headers.append((b"server-timing", server_timing(reply.timing, time.time()).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _dropped(self, reason: str) -> None:
        self._metrics.reply_headers_dropped.labels(reason).inc()
        log.warning("a worker's response header was not passed on", extra={"reason": reason})


async def read_body(receive: Receive, limit: int, announced: int | None) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``limit``.

    Raises:
        PayloadTooLargeError: ``Content-Length`` or the bytes received exceed ``limit``.
    """
    if announced is not None and announced > limit:
        raise PayloadTooLargeError(f"the body has {announced} bytes, limit {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnectedError("the caller disconnected while sending the body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body exceeds {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@contextlib.contextmanager
def disconnection(scope: Scope, receive: Receive) -> Iterator[asyncio.Future[None]]:
    """A future done when the caller disconnects; enter it once the body has been read.

    The gateway's own server provides one per connection (`CONNECTION_CLOSED`); under
    any other ASGI server a task waits in ``receive()`` until the block ends.
    """
    extension = scope.get("extensions", {}).get(CONNECTION_CLOSED)
    if extension is not None:
        yield extension["future"]
        return
    watcher = asyncio.ensure_future(wait_disconnect(receive))
    try:
        yield watcher
    finally:
        watcher.cancel()


async def wait_disconnect(receive: Receive) -> None:
    """Return when the caller disconnects (the body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def reply_parts(reply: protocol.Reply) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, body and headers answering a worker reply: passed through from 200 to 499.

    Raises:
        WorkerFailedError: a 5xx, a 1xx (not a final response) or a content type that could
            split or corrupt the response.
    """
    if reply.status >= 500 or reply.status < 200:
        raise problems.worker_error(reply)
    content_type = reply.content_type
    # The worker is untrusted: a content type with CR/LF would split the HTTP response.
    if len(content_type) > CONTENT_TYPE_MAX or not content_type.isascii() or not content_type.isprintable():
        raise WorkerFailedError("the worker's reply has an invalid content-type", worker_status=reply.status)
    headers = [(b"content-type", content_type.encode())]
    if reply.status in BODYLESS:
        return reply.status, b"", headers  # no Content-Length either (RFC 9110 §8.6)
    headers.append((b"content-length", str(len(reply.body)).encode()))
    return reply.status, reply.body, headers


OPENAPI_PATH: dict[str, Any] = {
    "post": {
        "summary": "Call a worker method",
        "description": (
            "Sends the body to a worker as `method` over Kafka and answers with the worker's reply: "
            "its status (below 500), content type and body. `Prefer: wait=N` sets the timeout. "
            "Failures are RFC 9457 problem+json: 400, 413, 429/503 with Retry-After, 502, 504."
        ),
        "operationId": "rpc",
        "parameters": [
            {"name": "method", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "requestBody": {"content": {"*/*": {"schema": {}}}},
        "responses": {
            "200": {"description": "The worker's reply"},
            "default": {
                "description": "A problem",
                "content": {protocol.PROBLEM_JSON: {"schema": {"type": "object"}}},
            },
        },
    }
}
"""The OpenAPI path item of ``/rpc/{method}``, merged into FastAPI's generated document."""

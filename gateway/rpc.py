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

import orjson

from kafkarpc import protocol, stamps
from kafkarpc.series import LabelledSeries
from kafkarpc.tracing import sampled_trace_id

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
from .headers import CONTENT_TYPE_MAX, accepts_event_stream
from .httpprotocol import CONNECTION_CLOSED
from .locations import ResultHandle
from .parts import PartFormat, PartStream, StreamBroken, end_problem
from .spans import SCOPE_KEY, ServerSpan
from .timing import server_timing

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.types import Receive, Scope, Send

    from kafkarpc.catalog import Method

    from .access import FairShare
    from .catalog import Catalog, Match
    from .correlation import CorrelationIds
    from .headers import Admitted, HeaderPolicy
    from .locations import ResultLocations
    from .metrics import GatewayMetrics
    from .settings import GatewaySettings

log = logging.getLogger(__name__)

PREFIX = "/rpc/"
ROUTE = PREFIX + "{method}"
"""The route template of ``/rpc/{method}`` (a span's name and ``http.route``)."""


def serves(path: str) -> bool:
    """Whether ``path`` is ``/rpc/{method}`` with a non-empty method and no further segment."""
    return path.startswith(PREFIX) and len(path) > len(PREFIX) and path.find("/", len(PREFIX)) < 0


# Statuses whose responses must not carry a body (RFC 9110 §6.4.1).
BODYLESS = frozenset({204, 304})
_CORRELATION_HEADER = problems.CORRELATION_HEADER.encode()
_UNSHARED = contextlib.nullcontext()
_STREAM_HEADERS = [(b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]  # nginx: pass parts on


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
        stream_for: float | None,
        lifetime: float | None,
    ) -> protocol.Reply:
        """The worker's reply to ``method`` with ``body``, within ``wait`` seconds."""

    def cancel(self, correlation_id: str, reason: str) -> None:
        """Tell the worker nobody waits for the answer any more."""

    def parts(self, correlation_id: str) -> PartStream | None:
        """The rest of a streamed reply whose first record `call` returned."""

    def position(self) -> tuple[int, int]:
        """The reply partition and an offset no reply to a request sent from now on precedes."""


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
        reject_unknown: bool = True,
        share: FairShare | None = None,
        settings: GatewaySettings | None = None,
        locations: ResultLocations | None = None,
        traced: bool = False,
    ) -> None:
        self._ids = ids
        self._traced = traced
        """Whether calls come with a `ServerSpan` to annotate (tracing on)."""
        self._metrics = metrics
        # Looked up once per label: these two are counted for every call.
        self._requests = LabelledSeries(metrics.requests)
        self._durations = LabelledSeries(metrics.request_duration)
        self._headers = headers
        self._body_limit = body_limit
        self._caller = caller
        self._timing = timing
        self._catalog = catalog
        """Which methods stream and take cancels; None: none do, and every method is forwarded."""
        self._reject_unknown = reject_unknown
        """Whether methods not in the catalog are 404 once it is read."""
        self._share = share
        """Caps each authenticated caller's pending requests; None without authentication."""
        self._locations = locations
        """Signs result locations for ``Prefer: respond-async``; None serves every call synchronously."""
        self._stream_for = None if settings is None else settings.reply_stream_max_duration
        """How long a streamed reply may last; None: no limit beyond the worker's deadline."""
        self._idle = None if settings is None else settings.reply_stream_idle_timeout
        """How long a streamed reply may go without a part; None: no limit."""
        self._async_timeout = None if settings is None or locations is None else settings.async_timeout
        """The deadline of a respond-async request; None serves every call synchronously."""
        self._retry_after = b"1" if settings is None else str(settings.retry_after).encode()

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
        features: Method | None = None
        lifetime: float | None = None
        try:
            # Readiness first: a gateway that cannot serve says 503, whatever its catalog knows.
            self._caller.ensure_accepting()
            features = self._features(method, label, match, scope)
            admitted = self._headers.admit(scope["headers"])
            body = await read_body(receive, self._body_limit, admitted.content_length)
            if admitted.respond_async and self._async_timeout is not None:
                lifetime = self._async_timeout
                position = self._caller.position()
            wait, honoured = self._caller.timeout_for(
                admitted.wait if lifetime is None else admitted.wait or 0
            )
            applied = f"wait={admitted.wait}".encode() if honoured and wait > 0 else None
            caller: protocol.Identity | None = scope.get(IDENTITY)
            # How long the whole answer may take: a streaming method's stream, at least as long as
            # a respond-async request's deadline; the 202's location lasts as long.
            streams = features is not None and features.streaming and self._stream_for is not None
            stream_for = max(self._stream_for or 0, lifetime or 0) if streams else None
            share = _UNSHARED if caller is None or self._share is None else self._share.held(caller.subject)
            with share, disconnection(scope, receive) as disconnected:
                reply = await self._caller.call(
                    correlation_id,
                    method,
                    body,
                    wait,
                    content_type=admitted.content_type,
                    trace=admitted.trace,
                    extra=admitted.extra,
                    timing=timing,
                    disconnected=disconnected,
                    route="" if match is None or match.route is None else str(match.route),
                    path_params={} if match is None else match.params,
                    query=scope.get("query_string", b"").decode("latin-1"),
                    caller=caller,
                    stream_for=stream_for,
                    lifetime=lifetime,
                )
            if reply.streaming:
                cancellable = features is not None and features.cancellable
                self._trace(scope, method, correlation_id, match, "streamed")  # not the hot path: unguarded
                await self._stream(reply, label, admitted, scope, receive, send, started, cancellable)
                return
            status, body, headers = reply_parts(reply)
            if reply.response_headers:
                headers += self._headers.for_caller(reply.response_headers, self._dropped)
            headers.append((_CORRELATION_HEADER, correlation_id.encode()))
            outcome, detail = "ok" if status < 400 else "rejected", None
        except GatewayError as error:
            if lifetime is not None and isinstance(error, ReplyTimeout):
                lasts = lifetime if stream_for is None else stream_for
                self._trace(scope, method, correlation_id, match, "accepted")
                await self._accepted(correlation_id, position, caller, label, applied, send, lasts)
                return
            outcome, detail = error.outcome, error.detail
            status, body, headers = self._failed(error, method, label, correlation_id, features)
            reply = None
        if self._traced:
            self._trace(scope, method, correlation_id, match, outcome, detail)
        self._requests(label, outcome).inc()
        self._durations(label).observe(
            time.perf_counter() - started, self._exemplar(scope) if self._traced else None
        )
        if applied is not None:
            headers.append((b"preference-applied", applied))
        if self._timing and reply is not None and reply.timing:
            headers.append((b"server-timing", server_timing(reply.timing, time.time()).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    def _trace(  # noqa: PLR0917 (what the span says)
        scope: Scope,
        method: str,
        correlation_id: str,
        match: Match | None,
        outcome: str,
        detail: str | None = None,
    ) -> None:
        """Name and annotate the call's SERVER span; ``detail`` says why, if the call failed."""
        server: ServerSpan | None = scope.get(SCOPE_KEY)
        if server is None:
            return
        server.name(scope["method"], ROUTE if match is None or match.route is None else match.route.template)
        span = server.span
        span.set_attribute("rpc.method", method)
        span.set_attribute("messaging.message.conversation_id", correlation_id)
        span.set_attribute("rpcgw.outcome", outcome)
        if detail is not None:
            server.fail(outcome, detail)

    @staticmethod
    def _exemplar(scope: Scope) -> dict[str, str] | None:
        """The latency exemplar of a sampled call: its trace id, so a slow bucket links to a trace."""
        server: ServerSpan | None = scope.get(SCOPE_KEY)
        trace_id = None if server is None else sampled_trace_id(server.span)
        return None if trace_id is None else {"trace_id": trace_id}

    def _features(self, method: str, label: str, match: Match | None, scope: Scope) -> Method | None:
        """What the catalog says of ``method`` (None if nothing), once the request may call it
        (its alerted series then exist: `GatewayMetrics.expect`).

        Raises:
            MethodNotAllowedError: a route's path with no route for this verb.
            BadRequestError: not a valid method name.
            UnknownMethodError: no live worker serves it (when unknown methods are rejected).
        """
        if match is not None and match.method is None:
            allowed = ", ".join(match.allowed)
            raise MethodNotAllowedError(f"{scope['path']} takes {allowed}", allowed=match.allowed)
        if not protocol.valid_method(method):
            raise BadRequestError(f"{method!r} is not a valid method name")
        catalog = self._catalog
        served = None if catalog is None else catalog.served.get(method)
        if catalog is not None and served is None and self._reject_unknown and catalog.ready.is_set():
            raise UnknownMethodError(f"no worker serves method {method!r}")
        self._metrics.expect(label)
        return None if served is None else served.method

    def _failed(
        self, error: GatewayError, method: str, label: str, correlation_id: str, features: Method | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """Count and log a failed call, tell its worker to stop if it can, and answer the problem."""
        if isinstance(error, ReplyTimeout):
            self._metrics.timeouts.labels(label).inc()
        reason = CANCEL_REASONS.get(type(error))
        if reason is not None and features is not None and features.cancellable:
            self._caller.cancel(correlation_id, reason)
        log.info(
            "rpc failed",
            extra={
                "method": method,
                "outcome": error.outcome,
                "status": error.status,
                "detail": error.detail,
            },
        )
        problem = problems.from_error(error)  # carries the correlation id already
        return problem.status_code, bytes(problem.body), problem.raw_headers

    async def _accepted(  # noqa: PLR0917 (what the 202 says)
        self,
        correlation_id: str,
        position: tuple[int, int],
        caller: protocol.Identity | None,
        label: str,
        applied: bytes | None,
        send: Send,
        lasts: float,
    ) -> None:
        """202 Accepted with the result's signed location (RFC 7240 respond-async); the last part
        of the answer may come ``lasts`` seconds from now."""
        assert self._locations is not None
        partition, offset = position
        deadline_ms = int((time.time() + lasts) * 1000)
        subject = None if caller is None else caller.subject
        handle = ResultHandle(partition, offset, correlation_id, subject, deadline_ms)
        location = self._locations.location(handle).encode()
        self._metrics.accepted.labels(label).inc()
        self._metrics.requests.labels(label, "accepted").inc()
        preference = b"respond-async" if applied is None else b"respond-async, " + applied
        body = orjson.dumps(
            {"status": "accepted", "location": location.decode(), "correlation_id": correlation_id}
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"location", location),
            (b"preference-applied", preference),
            (b"retry-after", self._retry_after),
            (_CORRELATION_HEADER, correlation_id.encode()),
        ]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(  # noqa: PLR0917 (the first part, the request and the ASGI triple)
        self,
        first: protocol.Reply,
        label: str,
        admitted: Admitted,
        scope: Scope,
        receive: Receive,
        send: Send,
        started: float,
        cancellable: bool,
    ) -> None:
        """Relay a streamed reply part by part until its end record, a break, a limit or a hang-up;
        a stream ended early is cancelled if its method reads cancel records."""
        stream = self._caller.parts(first.correlation_id)
        try:
            reply_parts(first)  # the first part's status and content type, checked like a reply's
            if stream is None:  # the router opens one for every streaming first record
                raise WorkerFailedError("the streamed reply was lost", worker_status=first.status)
        except GatewayError as error:
            if stream is not None:
                stream.close()
            self._metrics.requests.labels(label, error.outcome).inc()
            await problems.from_error(error)(scope, receive, send)
            return
        self._metrics.requests.labels(label, "ok").inc()
        self._metrics.request_duration.labels(label).observe(
            time.perf_counter() - started, self._exemplar(scope) if self._traced else None
        )
        writer = PartFormat.choose(accepts_event_stream(admitted.accept), first)
        headers = [(b"content-type", writer.content_type), *_STREAM_HEADERS]
        if first.response_headers:
            headers += self._headers.for_caller(first.response_headers, self._dropped)
        headers.append((_CORRELATION_HEADER, first.correlation_id.encode()))
        relay = _Relay(stream, writer, send, self._idle)
        with disconnection(scope, receive) as disconnected:
            disconnected.add_done_callback(relay.caller_left)
            try:
                await send({"type": "http.response.start", "status": first.status, "headers": headers})
                await relay.run(first, self._stream_for)
            finally:
                disconnected.remove_done_callback(relay.caller_left)
                stream.close()
        self._metrics.streamed_replies.labels(label, relay.outcome).inc()
        if relay.cancel is not None and cancellable:
            self._caller.cancel(first.correlation_id, relay.cancel)
        if relay.outcome != "complete":
            log.info("streamed reply ended early", extra={"outcome": relay.outcome, "parts": relay.parts})

    def _dropped(self, reason: str) -> None:
        self._metrics.reply_headers_dropped.labels(reason).inc()
        log.warning("a worker's response header was not passed on", extra={"reason": reason})


CANCEL_REASONS: dict[type[GatewayError], str] = {
    ReplyTimeout: protocol.CancelReason.DEADLINE,
    ClientDisconnectedError: protocol.CancelReason.DISCONNECTED,
}
"""The errors after which the worker is told to stop, and the reason it is given."""


class _Relay:
    """Writes one streamed reply to its caller and records how it ended."""

    def __init__(self, stream: PartStream, writer: PartFormat, send: Send, idle: float | None) -> None:
        self._stream = stream
        self._writer = writer
        self._send = send
        self._idle = idle
        self.parts = 0
        self.outcome = "complete"
        """complete, error, idle, limit, overflow, broken or disconnected."""
        self.cancel: str | None = None
        """The reason to give the worker, when it should stop."""

    def caller_left(self, _: object) -> None:
        self._stream.interrupt(protocol.CancelReason.DISCONNECTED, "the caller closed the connection")

    async def run(self, first: protocol.Reply, cap: float | None) -> None:
        """Send ``first`` and every part after it, then the end, the error, or nothing (hang-up)."""
        try:
            async with asyncio.timeout(cap):
                await self._part(first)
                while True:
                    try:
                        async with asyncio.timeout(self._idle):
                            part = await self._stream.next()
                    except TimeoutError:
                        raise StreamBroken(
                            protocol.CancelReason.STREAM_IDLE, f"no part arrived within {self._idle:g} s"
                        ) from None
                    if part.final:
                        break
                    await self._part(part)
        except StreamBroken as broken:
            if broken.reason == protocol.CancelReason.DISCONNECTED:
                self.outcome, self.cancel = "disconnected", broken.reason
                return
            self.outcome = _OUTCOMES[broken.reason]
            self.cancel = broken.reason
            status = 504 if broken.reason == protocol.CancelReason.STREAM_IDLE else 502
            await self._fail(protocol.problem_body(status, _title(status), broken.detail))
            return
        except TimeoutError:
            self.outcome, self.cancel = "limit", protocol.CancelReason.DEADLINE
            await self._fail(
                protocol.problem_body(504, _title(504), f"the stream lasted longer than {cap:g} s")
            )
            return
        if part.is_error:
            self.outcome = "error"
            await self._fail(end_problem(part))
            return
        await self._send(
            {"type": "http.response.body", "body": self._writer.end(self.parts), "more_body": False}
        )

    async def _part(self, part: protocol.Reply) -> None:
        await self._send({"type": "http.response.body", "body": self._writer.part(part), "more_body": True})
        self.parts += 1

    async def _fail(self, problem: bytes) -> None:
        ending = self._writer.error(problem)
        if not ending:
            # Bodies sent as they are cannot carry an error: the response is left incomplete
            # (the connection closes without the last chunk) so that no client takes it for whole.
            log.warning("streamed reply cut short", extra={"outcome": self.outcome})
            return
        await self._send({"type": "http.response.body", "body": ending, "more_body": False})


_OUTCOMES = {
    protocol.CancelReason.STREAM_IDLE: "idle",
    protocol.CancelReason.STREAM_OVERFLOW: "overflow",
    protocol.CancelReason.STREAM_BROKEN: "broken",
}


def _title(status: int) -> str:
    return "Gateway Timeout" if status == 504 else "Bad Gateway"


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


def disconnection(scope: Scope, receive: Receive) -> contextlib.AbstractContextManager[asyncio.Future[None]]:
    """A future done when the caller disconnects; enter it once the body has been read.

    The gateway's own server provides one per connection (`CONNECTION_CLOSED`), handed out
    without a generator (entered for every call, ``@contextmanager`` costs about 2 µs); under
    any other ASGI server a task waits in ``receive()`` until the block ends.
    """
    extension = scope.get("extensions", {}).get(CONNECTION_CLOSED)
    if extension is not None:
        return contextlib.nullcontext(extension["future"])
    return _watched(receive)


@contextlib.contextmanager
def _watched(receive: Receive) -> Iterator[asyncio.Future[None]]:
    """A task waiting in ``receive()`` for the disconnect, for the block's length."""
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
            "its status (below 500), content type and body, or its parts as they come for a method "
            "that streams (SSE with `Accept: text/event-stream`, else NDJSON). `Prefer: wait=N` sets "
            "the timeout; `Prefer: respond-async` answers 202 with the result's `Location`. "
            "Failures are RFC 9457 problem+json: 400, 413, 429/503 with Retry-After, 502, 504."
        ),
        "operationId": "rpc",
        "parameters": [
            {"name": "method", "in": "path", "required": True, "schema": {"type": "string"}},
        ],
        "requestBody": {"content": {"*/*": {"schema": {}}}},
        "responses": {
            "200": {"description": "The worker's reply"},
            "202": {"description": "Prefer: respond-async: GET the Location for the result"},
            "default": {
                "description": "A problem",
                "content": {protocol.PROBLEM_JSON: {"schema": {"type": "object"}}},
            },
        },
    }
}
"""The OpenAPI path item of ``/rpc/{method}``, merged into FastAPI's generated document."""

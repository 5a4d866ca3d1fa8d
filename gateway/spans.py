"""`ServerSpans`: one OpenTelemetry SERVER span per HTTP call, continuing the caller's trace;
`RequestSpans`: its request's PRODUCER span and its reply's arrival.

The span follows the HTTP semantic conventions (``http.request.method``, ``url.path``,
``http.route``, ``http.response.status_code``); it is the current span while the call is
served, so the request's PRODUCER span (`gateway.client`) and the reply's arrival are its
children. A 5xx marks it failed with ``error.type`` (the gateway's outcome: ``timeout``,
``shed``, ``worker_error``...) and the problem's detail, which the route reports through
`ServerSpan.fail`; a 4xx is the caller's error and leaves the span unmarked, as the
conventions say. Probes and ``/metrics`` are not traced: they are polled, not called.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from opentelemetry import context, trace

from kafkarpc import protocol, stamps, tracing
from kafkarpc.tracing import Link, Span, SpanKind, Tracer

from .connections import PROBES

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.types import Message, Receive, Scope, Send

    ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]

SCOPE_KEY = "rpcgw.server_span"
"""Where a route finds the call's `ServerSpan` in the ASGI scope (absent when not traced)."""


class ServerSpan:
    """The SERVER span of one call, and what the route found out about a failure."""

    __slots__ = ("error", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.error: tuple[str, str] | None = None

    def fail(self, error_type: str, detail: str) -> None:
        """Why the call failed: applied to the span if the answer is a 5xx."""
        self.error = (error_type, detail)

    def name(self, method: str, route: str) -> None:
        """Name the span by its route template (low cardinality), as the conventions ask."""
        self.span.update_name(f"{method} {route}")
        self.span.set_attribute("http.route", route)


class ServerSpans:
    """Wraps an ASGI app's HTTP calls in SERVER spans.

    ``templates`` names the calls of the bare ASGI endpoints (``/results/`` → ``/results/{token}``),
    which FastAPI's routing, that names the others, never sees.
    """

    def __init__(self, tracer: Tracer, templates: dict[str, str] | None = None) -> None:
        self._tracer = tracer
        self._templates = templates or {}

    @staticmethod
    def traces(scope: Scope) -> bool:
        """Whether this call gets a span: HTTP, and not a probe or the metrics scrape."""
        return scope["type"] == "http" and scope["path"] not in PROBES

    async def serve(self, app: ASGI, scope: Scope, receive: Receive, send: Send) -> None:
        """Run ``app`` for one call inside its span."""
        method = scope["method"]
        client = scope.get("client")
        template = self._template(scope["path"])
        attributes: dict[str, Any] = {
            "http.request.method": method,
            # A bare endpoint's path may hold a capability (a result token): its template instead.
            "url.path": scope["path"] if template is None else template,
            "url.scheme": scope.get("scheme", "http"),
            "network.protocol.version": scope.get("http_version", "1.1"),
        }
        if client:
            attributes["client.address"] = client[0]
        span = self._tracer.start_span(
            method, context=tracing.extract(scope["headers"]), kind=SpanKind.SERVER, attributes=attributes
        )
        server = ServerSpan(span)
        scope[SCOPE_KEY] = server
        status = 0

        async def recorded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        token = context.attach(trace.set_span_in_context(span))
        try:
            await app(scope, receive, recorded)
        except Exception as exc:
            span.record_exception(exc)
            server.fail(type(exc).__qualname__, str(exc))
            status = status or 500
            raise
        finally:
            context.detach(token)
            self._end(server, scope, method, status)

    def _end(self, server: ServerSpan, scope: Scope, method: str, status: int) -> None:
        span = server.span
        route = getattr(scope.get("route"), "path", None)  # FastAPI's matched route, if any
        if not isinstance(route, str):
            route = self._template(scope["path"])
        if route is not None:
            server.name(method, route)
        if status:
            span.set_attribute("http.response.status_code", status)
        if status >= 500:
            tracing.fail(span, *(server.error or (str(status), _phrase(status))))
        span.end()

    def _template(self, path: str) -> str | None:
        return next((name for prefix, name in self._templates.items() if path.startswith(prefix)), None)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class RequestSpans:
    """The request's PRODUCER span and the reply's arrival, children of the call's SERVER span."""

    def __init__(self, tracer: Tracer, request_topic: str, reply_topic: str) -> None:
        self._tracer = tracer
        self._request_topic = request_topic
        self._reply_topic = reply_topic

    def sending(self, correlation_id: str, method: str) -> Span:
        """The span of producing the request record; its context is what the record carries."""
        attributes = tracing.messaging("send", self._request_topic, correlation_id)
        attributes["rpc.method"] = method
        return self._tracer.start_span(
            f"send {self._request_topic}", kind=SpanKind.PRODUCER, attributes=attributes
        )

    def arrived(self, reply: protocol.Reply, partition: int | None) -> None:
        """A CONSUMER span from the reply's fetch to its match with the request, linked to the
        worker span that produced it (the reply's ``traceparent``)."""
        if not trace.get_current_span().is_recording():
            return  # an unsampled call: nothing would be kept
        found = stamps.stamps(reply.timing)
        start, end = found.get("reply_fetched"), found.get("reply_routed")
        worker = trace.get_current_span(tracing.extract(reply.trace)).get_span_context()
        attributes = tracing.messaging("receive", self._reply_topic, reply.correlation_id, partition)
        attributes["rpcgw.worker_status"] = reply.status
        span = self._tracer.start_span(
            f"receive {self._reply_topic}",
            kind=SpanKind.CONSUMER,
            attributes=attributes,
            links=[Link(worker)] if worker.is_valid else None,
            start_time=None if start is None else start * 1000,
        )
        span.end(None if end is None else end * 1000)

"""Prometheus metrics of one gateway, on their own registry (one per app, so tests can build many).

Names follow Prometheus conventions: ``rpcgw_`` prefix, base units, ``_total`` for
counters (prometheus-client appends it). Method names come from callers, so the
``method`` label is capped: past `GatewaySettings.metric_methods_limit` distinct
names, new ones share the label ``_other``; invalid names are ``_invalid``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    gc_collector,
    platform_collector,
    process_collector,
)
from prometheus_client.exposition import choose_encoder

from kafkarpc import build, protocol

PREFIX = "rpcgw"
OTHER_METHOD = "_other"
INVALID_METHOD = "_invalid"
# Latency buckets in seconds; the configured max timeout is appended as the last finite bucket.
BASE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)


class GatewayMetrics:
    """Every metric the gateway exports."""

    def __init__(self, max_timeout: float, methods_limit: int) -> None:
        self.registry = CollectorRegistry()
        self._methods: set[str] = set()
        self._expected: set[str] = set()
        self._methods_limit = methods_limit
        registry = self.registry
        process_collector.ProcessCollector(registry=registry)
        platform_collector.PlatformCollector(registry=registry)
        gc_collector.GCCollector(registry=registry)
        buckets = sorted({b for b in BASE_BUCKETS if b < max_timeout} | {max_timeout})
        self.requests = Counter(
            f"{PREFIX}_requests",
            "RPC requests by method and outcome.",
            ["method", "outcome"],
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "End-to-end RPC latency, from request received to response ready.",
            ["method"],
            buckets=buckets,
            registry=registry,
        )
        self.timeouts = Counter(
            f"{PREFIX}_timeouts",
            "RPC requests answered 504 at their deadline.",
            ["method"],
            registry=registry,
        )
        self.pending = Gauge(
            f"{PREFIX}_pending_requests", "RPC requests awaiting a reply.", registry=registry
        )
        self.late_replies = Counter(
            f"{PREFIX}_late_replies",
            "Replies to this instance's requests nobody awaits any more (timed out, abandoned, duplicate).",
            registry=registry,
        )
        self.unmatched_replies = Counter(
            f"{PREFIX}_unmatched_replies",
            "Replies to ids this process never issued: another replica's, or orphans of a restart.",
            registry=registry,
        )
        self.malformed_replies = Counter(
            f"{PREFIX}_malformed_replies", "Reply records that break the wire contract.", registry=registry
        )
        self.produce_errors = Counter(
            f"{PREFIX}_produce_errors",
            "Failed produces by librdkafka error name.",
            ["error"],
            registry=registry,
        )
        self.shed_requests = Counter(
            f"{PREFIX}_shed_requests",
            "Requests refused to keep memory bounded.",
            ["reason"],
            registry=registry,
        )
        self.shed_requests.labels("pending_cap")  # at 0 from the start: see `method_label`
        self.reply_consumer_lag = Gauge(
            f"{PREFIX}_reply_consumer_lag",
            "Replies on the reply partition not yet read by this instance (records).",
            registry=registry,
        )
        self.published = Counter(
            f"{PREFIX}_published",
            "Fire-and-forget publishes by topic and outcome.",
            ["topic", "outcome"],
            registry=registry,
        )
        self.stream_subscribers = Gauge(
            f"{PREFIX}_stream_subscribers", "Open SSE and WebSocket stream connections.", registry=registry
        )
        self.stream_overflows = Counter(
            f"{PREFIX}_stream_overflows",
            "Stream subscribers cut off for falling more than GATEWAY_STREAM_BUFFER records behind.",
            registry=registry,
        )
        self.catalog_methods = Gauge(
            f"{PREFIX}_catalog_methods",
            "Methods live workers serve, from the catalog topic.",
            registry=registry,
        )
        self.catalog_refused = Counter(
            f"{PREFIX}_catalog_refused",
            "Catalog records or routes refused (invalid, reserved_path, route_conflict, no_key).",
            ["reason"],
            registry=registry,
        )
        self.reply_headers_dropped = Counter(
            f"{PREFIX}_reply_headers_dropped",
            "Response headers from workers not passed to callers (not_allowed, invalid_value).",
            ["reason"],
            registry=registry,
        )
        self.cancels = Counter(
            f"{PREFIX}_cancels",
            "Cancel records sent to workers, by reason (disconnected, deadline, stream-idle, ...).",
            ["reason"],
            registry=registry,
        )
        self.streamed_replies = Counter(
            f"{PREFIX}_streamed_replies",
            "Streamed replies relayed to callers, by how they ended (complete, error, idle, limit, "
            "overflow, broken, disconnected).",
            ["method", "outcome"],
            registry=registry,
        )
        self.accepted = Counter(
            f"{PREFIX}_async_accepted",
            "Prefer: respond-async requests answered 202 with a result location, by method.",
            ["method"],
            registry=registry,
        )
        self.result_lookups = Counter(
            f"{PREFIX}_result_lookups",
            "GET /results/ answers by outcome: ok, rejected, pending, timeout, gone, no_such_result, "
            "forbidden, worker_error, unavailable, not_ready, bad_request, error.",
            ["outcome"],
            registry=registry,
        )
        Info(f"{PREFIX}_build", "Gateway build.", registry=registry).info({"version": build.version()})

    def method_label(self, method: str) -> str:
        """A bounded label value for ``method``."""
        if method in self._methods:
            return method
        if not protocol.valid_method(method):
            return INVALID_METHOD
        if len(self._methods) >= self._methods_limit:
            return OTHER_METHOD
        self._methods.add(method)
        return method

    def expect(self, label: str) -> None:
        """Create the series the timeout alert reads, at 0, for a method about to be called.

        A counter's series appears at its first increment, so Prometheus' first sample of it is
        already N and rate() never sees those N: a method's first timeouts would move no alert.
        Called once a request is accepted, so names nobody serves (404) add no series.
        """
        if label in self._expected:
            return
        self._expected.add(label)
        self.timeouts.labels(label)
        for outcome in ALERTED_OUTCOMES:
            self.requests.labels(label, outcome)

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry and its media type: OpenMetrics (with exemplars) if ``accept`` (the
        scraper's ``Accept`` header) asks for it, as Prometheus does, else the text format."""
        encoder, media_type = choose_encoder(accept or "")
        return encoder(self.registry), media_type


ALERTED_OUTCOMES = ("ok", "timeout")
"""Outcomes whose series exist at 0 once a method is seen (the timeout alert's ratio reads them)."""

CLOSE_REASONS = ("head_timeout", "body_timeout", "idle", "over_limit", "over_ceiling")
"""Why the gateway closed a connection (`gateway.connections`)."""


class ConnectionMetrics:
    """The HTTP connections' metrics, one set per server.

    The server, and so these, exist before the app's lifespan builds `GatewayMetrics`;
    `join` adds them to its registry once it does.
    """

    def __init__(self) -> None:
        self.open = Gauge(
            f"{PREFIX}_connections_open", "Open HTTP connections, WebSockets included.", registry=None
        )
        self.limit = Gauge(
            f"{PREFIX}_connections_limit",
            "Connections served as usual: GATEWAY_MAX_CONNECTIONS, or less to fit the open-files limit.",
            registry=None,
        )
        self.closed = Counter(
            f"{PREFIX}_connections_closed",
            "Connections the gateway closed: head_timeout, body_timeout, idle (keep-alive), "
            "over_limit (503 past GATEWAY_MAX_CONNECTIONS), over_ceiling (closed at once, unread).",
            ["reason"],
            registry=None,
        )
        for reason in CLOSE_REASONS:
            self.closed.labels(reason)

    def join(self, registry: CollectorRegistry) -> None:
        """Export these through ``registry`` (the app's, whose /metrics serves them)."""
        for metric in (self.open, self.limit, self.closed):
            registry.register(metric)

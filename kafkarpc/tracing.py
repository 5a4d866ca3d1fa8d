"""OpenTelemetry for both processes: set up from the standard ``OTEL_*`` variables, off by default.

Tracing is on when ``OTEL_TRACES_EXPORTER`` names an exporter (``otlp`` or ``console``), or
when it is unset and an OTLP endpoint is (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``); ``OTEL_SDK_DISABLED=true`` turns it off. The SDK
reads the rest itself: ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, the sampler
(``OTEL_TRACES_SAMPLER``/``_ARG``), the OTLP endpoint, headers and timeout, the batch
processor's limits. OTLP goes over HTTP/protobuf (port 4318), so no gRPC runtime ships.

When off, the processes hold no tracer and test one ``is None`` per request: the hot path
costs nothing more. Context crosses Kafka in the records' ``traceparent``/``tracestate``
headers (W3C trace context, the wire contract's trace headers; docs/PROTOCOL.md), never in
``baggage``, which the contract does not carry.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import build, protocol

if TYPE_CHECKING:
    from opentelemetry.context import Context

__all__ = [
    "ERROR",
    "Link",
    "Span",
    "SpanKind",
    "Status",
    "Tracer",
    "Tracing",
    "extract",
    "fail",
    "inject",
    "messaging",
    "sampled_trace_id",
]

SHUTDOWN_TIMEOUT = 3.0
"""Seconds a process waits at exit for its last spans to be exported."""

EXPORTERS = ("otlp", "console")
"""The values of ``OTEL_TRACES_EXPORTER`` that turn tracing on."""

MESSAGING_SYSTEM = "kafka"

ERROR = StatusCode.ERROR

_PROPAGATOR = TraceContextTextMapPropagator()
_TRUE = ("true", "1", "yes")


@dataclass(frozen=True, slots=True)
class Tracing:
    """A process's tracer and the provider that exports its spans."""

    provider: TracerProvider
    tracer: Tracer
    exporter: SpanExporter
    """Where the spans go, in batches (``OTEL_BSP_*`` tune them)."""

    @classmethod
    def from_environment(cls, service: str, exporter: SpanExporter | None = None) -> Tracing | None:
        """The process's tracing as the ``OTEL_*`` variables ask; None when it is off.

        ``service`` is the service name unless ``OTEL_SERVICE_NAME`` or ``service.name`` in
        ``OTEL_RESOURCE_ATTRIBUTES`` names another. ``exporter`` replaces the one chosen from
        the environment (tests: the SDK's in-memory exporter).

        Raises:
            ValueError: ``OTEL_TRACES_EXPORTER`` names an exporter this build does not have.
        """
        if exporter is None:
            exporter = _exporter(os.environ)
            if exporter is None:
                return None
        resource = Resource.create({SERVICE_VERSION: build.version()})
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service}))
        provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("kafka-rpc-gateway", build.version())
        return cls(provider, tracer, exporter)

    def install(self) -> None:
        """Make this the process's global provider, so that code tracing with
        ``opentelemetry.trace.get_tracer`` (a handler, an instrumented library) joins in."""
        trace.set_tracer_provider(self.provider)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Export what is buffered and stop, waiting at most ``timeout`` seconds (at process exit,
        after the drain: a collector that is down must not hold the exit past the pod's grace)."""
        exporting = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        exporting.start()
        exporting.join(timeout)


def _exporter(environ: Mapping[str, str]) -> SpanExporter | None:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
        return None
    chosen = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not chosen:
        traces, anything = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        endpoint = environ.get(traces) or environ.get(anything)
        chosen = "otlp" if endpoint else "none"
    if chosen == "none":
        return None
    if chosen == "console":
        return ConsoleSpanExporter()
    if chosen != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={chosen!r} is not one of {', '.join(EXPORTERS)} or none")
    protocol_name = environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    )
    if protocol_name != "http/protobuf":
        raise ValueError(f"OTLP protocol {protocol_name!r} is not supported: use http/protobuf (port 4318)")
    # Imported only when used: it pulls in protobuf and requests.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*


class _HeaderGetter(Getter[Mapping[str, str]]):
    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)


_GETTER = _HeaderGetter()


def extract(headers: Iterable[tuple[str | bytes, bytes | None]] | None) -> Context:
    """The trace context in Kafka record or HTTP headers (malformed ones are ignored, as W3C says)."""
    carrier: dict[str, str] = {}
    for name, value in headers or ():
        key = (name.decode("latin-1") if isinstance(name, bytes) else name).lower()
        if key in protocol.TRACE_HEADERS and value is not None:
            carrier[key] = value.decode("latin-1")
    return _PROPAGATOR.extract(carrier, getter=_GETTER)


def inject(span: Span) -> protocol.Headers:
    """``traceparent`` (and ``tracestate``) naming ``span`` as the parent, for a record's headers."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return [(name, value.encode()) for name, value in carrier.items()]


def messaging(
    operation: str, destination: str, correlation_id: str, partition: int | None = None
) -> dict[str, str | int]:
    """Messaging semantic-convention attributes of a span sending or taking one record."""
    attributes: dict[str, str | int] = {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
        "messaging.operation.name": operation,
        "messaging.destination.name": destination,
        "messaging.message.conversation_id": correlation_id,
        "messaging.kafka.message.key": correlation_id,
    }
    if partition is not None:
        attributes["messaging.destination.partition.id"] = str(partition)
    return attributes


def fail(span: Span, error_type: str, description: str) -> None:
    """Mark ``span`` failed: ``error.type`` (a short, low-cardinality name) and why."""
    span.set_attribute("error.type", error_type)
    span.set_status(Status(StatusCode.ERROR, description))


def sampled_trace_id(span: Span) -> str | None:
    """``span``'s trace id in hex when it is sampled (a metric exemplar links to it), else None."""
    context = span.get_span_context()
    return format(context.trace_id, "032x") if context.trace_flags.sampled else None

"""An in-memory tracer for tests: the production set-up (`Tracing.from_environment`), with the
SDK's in-memory exporter in place of OTLP."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kafkarpc.tracing import Tracer, Tracing


@dataclass
class MemoryTracing:
    """A tracer whose finished spans a test reads back."""

    tracing: Tracing
    exporter: InMemorySpanExporter

    @classmethod
    def start(cls, service: str = "test") -> MemoryTracing:
        """Set up as the environment's ``OTEL_*`` say (the sampler, the resource), exporting here."""
        exporter = InMemorySpanExporter()
        tracing = Tracing.from_environment(service, exporter)
        assert tracing is not None
        return cls(tracing, exporter)

    @property
    def tracer(self) -> Tracer:
        return self.tracing.tracer

    def spans(self) -> list[ReadableSpan]:
        """Every span finished so far (the batch processor flushed first)."""
        assert self.tracing.provider.force_flush()
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.name.startswith(prefix)]

    def close(self) -> None:
        self.tracing.shutdown()

"""`Tracing.from_environment`: off unless the standard OTEL_* variables ask for traces."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import ConsoleSpanExporter

from kafkarpc.tracing import Tracing

VARIABLES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def exporter_of(tracing: Tracing | None) -> object:
    assert tracing is not None
    tracing.shutdown()
    return tracing.exporter


def test_off_by_default() -> None:
    assert Tracing.from_environment("svc") is None


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_an_otlp_endpoint_turns_it_on(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:4318")
    assert isinstance(exporter_of(Tracing.from_environment("svc")), OTLPSpanExporter)


def test_the_exporter_variable_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert Tracing.from_environment("svc") is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    assert isinstance(exporter_of(Tracing.from_environment("svc")), ConsoleSpanExporter)


def test_the_sdk_switch_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert Tracing.from_environment("svc") is None


@pytest.mark.parametrize(
    ("variable", "value"), [("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
)
def test_what_this_build_cannot_do_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValueError, match=value):
        Tracing.from_environment("svc")


def test_the_service_name_defaults_to_the_process_and_yields_to_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    tracing = Tracing.from_environment("kafka-rpc-gateway")
    assert tracing is not None
    attributes = tracing.provider.resource.attributes
    assert attributes["service.name"] == "kafka-rpc-gateway"
    assert attributes["deployment.environment.name"] == "test"
    assert attributes["service.version"]
    tracing.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "orders-gateway")
    renamed = Tracing.from_environment("kafka-rpc-gateway")
    assert renamed is not None
    assert renamed.provider.resource.attributes["service.name"] == "orders-gateway"
    renamed.shutdown()

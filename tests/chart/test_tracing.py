"""Tracing values: the standard OTEL_* variables in both Deployments when on, none when off,
and what the processes' own tracing setup makes of the rendered environment."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest

from kafkarpc.tracing import Tracing

from .conftest import NAMESPACE, Helm, Manifests, with_kafka

COMPONENTS = ("gateway", "worker")
ENDPOINT = "http://jaeger-collector.tracing:4318"
TRACING_ON = {"tracing": {"enabled": True, "endpoint": ENDPOINT}}


def env_list(manifests: Manifests, component: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = manifests.deployment(component)["spec"]["template"]["spec"]["containers"][
        0
    ].get("env", [])
    return env


def values_of(manifests: Manifests, component: str) -> dict[str, str]:
    """The literal env values of a component's container (valueFrom entries left out)."""
    return {item["name"]: item["value"] for item in env_list(manifests, component) if "value" in item}


def as_kubernetes_expands(manifests: Manifests, component: str, pod: str) -> dict[str, str]:
    """The container's environment as the kubelet builds it: downward API fields filled in,
    ``$(VAR)`` replaced by variables defined earlier in the list."""
    fields = {"metadata.namespace": NAMESPACE, "metadata.name": pod}
    env: dict[str, str] = {}
    for item in env_list(manifests, component):
        if "value" in item:
            env[item["name"]] = re.sub(
                r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"]
            )
        elif "fieldRef" in item["valueFrom"]:
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def test_tracing_is_off_by_default_and_leaves_no_otel_variable(default: Manifests):
    for component in COMPONENTS:
        names = [item["name"] for item in env_list(default, component)]
        assert not [name for name in names if name.startswith(("OTEL_", "K8S_"))], component
    assert not [key for key in default.config() if key.startswith("OTEL_")]


@pytest.mark.parametrize("component", COMPONENTS)
def test_tracing_on_sets_the_standard_variables(helm: Helm, component: str):
    manifests = helm.render(with_kafka(TRACING_ON))
    env = values_of(manifests, component)
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert env["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert env["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    assert (
        env["OTEL_SERVICE_NAME"] == {"gateway": "kafka-rpc-gateway", "worker": "kafka-rpc-worker"}[component]
    )
    expanded = as_kubernetes_expands(manifests, component, "rpc-pod-1")
    assert expanded["OTEL_RESOURCE_ATTRIBUTES"] == f"k8s.namespace.name={NAMESPACE},k8s.pod.name=rpc-pod-1"


def test_the_processes_trace_as_the_rendered_environment_says(
    default: Manifests, everything: Manifests, monkeypatch: pytest.MonkeyPatch
):
    # ci/all-features-values.yaml: own service names, samplerArg 0.25, one resource attribute.
    for component, service in (("gateway", "orders-gateway"), ("worker", "orders-worker")):
        use_environment(monkeypatch, as_kubernetes_expands(everything, component, f"rpc-{component}-0"))
        tracing = Tracing.from_environment("not-this-name")
        assert tracing is not None
        try:
            attributes = tracing.provider.resource.attributes
            assert attributes["service.name"] == service
            assert attributes["k8s.namespace.name"] == NAMESPACE
            assert attributes["k8s.pod.name"] == f"rpc-{component}-0"
            assert attributes["deployment.environment.name"] == "prod"
            assert "TraceIdRatioBased{0.25}" in tracing.provider.sampler.get_description()
        finally:
            tracing.shutdown()
    use_environment(monkeypatch, as_kubernetes_expands(default, "gateway", "rpc-gateway-0"))
    assert Tracing.from_environment("kafka-rpc-gateway") is None


def use_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env``'s OTEL_* variables the process's, and only those (the SDK reads os.environ)."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("OTEL_"):
            monkeypatch.setenv(name, value)


def test_service_names_sampler_and_attributes_are_values(helm: Helm):
    values = {
        "tracing": {
            **TRACING_ON["tracing"],
            "sampler": "always_on",
            "samplerArg": 0.5,  # as --set gives it: a number
            "resourceAttributes": {"service.namespace": "payments", "deployment.environment.name": "prod"},
            "serviceNames": {"gateway": "edge", "worker": "orders"},
        }
    }
    manifests = helm.render(with_kafka(values))
    gateway, worker = values_of(manifests, "gateway"), values_of(manifests, "worker")
    assert (gateway["OTEL_SERVICE_NAME"], worker["OTEL_SERVICE_NAME"]) == ("edge", "orders")
    assert gateway["OTEL_TRACES_SAMPLER"] == "always_on"
    assert gateway["OTEL_TRACES_SAMPLER_ARG"] == "0.5"
    assert gateway["OTEL_RESOURCE_ATTRIBUTES"].endswith(
        ",deployment.environment.name=prod,service.namespace=payments"
    )


def test_extra_env_wins_over_the_charts_tracing_variables(helm: Helm):
    values = {**TRACING_ON, "worker": {"extraEnv": [{"name": "OTEL_TRACES_SAMPLER", "value": "always_off"}]}}
    names = [item["name"] for item in env_list(helm.render(with_kafka(values)), "worker")]
    # Kubernetes keeps the last of duplicate names.
    assert names.index("OTEL_TRACES_SAMPLER", names.index("OTEL_TRACES_SAMPLER") + 1) == len(names) - 1


def test_tracing_without_an_endpoint_fails_with_the_fix(helm: Helm):
    error = helm.render_error(with_kafka({"tracing": {"enabled": True}}))
    assert "tracing.enabled needs tracing.endpoint" in error


@pytest.mark.parametrize(
    ("tracing", "named"),
    [
        ({"resourceAttributes": {"team": "a,b"}}, "'a,b' does not match"),
        ({"resourceAttributes": {"team name": "a"}}, "'team name' does not match"),
        ({"samplerArg": "2"}, "'2' does not match"),
        ({"samplerArg": 1.5}, "maximum"),
        ({"sampler": "sometimes"}, "'parentbased_traceidratio'"),
        ({"endpoint": "jaeger:4318"}, "'jaeger:4318' does not match"),
    ],
    ids=["comma-in-value", "space-in-key", "ratio-above-1", "number-above-1", "unknown-sampler", "no-scheme"],
)
def test_values_the_sdk_would_misread_are_refused(helm: Helm, tracing: dict[str, Any], named: str):
    error = helm.render_error(with_kafka({"tracing": {**TRACING_ON["tracing"], **tracing}}))
    assert "don't meet the specifications of the schema" in error
    assert named in error

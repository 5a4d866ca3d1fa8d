"""Gateway and worker Deployments: labels, ports and probes matching the app, security, termination."""

from __future__ import annotations

import math
from collections.abc import Collection
from typing import Any

import pytest

from gateway.access import AccessSettings
from gateway.settings import GatewaySettings
from kafkarpc.connection import KafkaSettings
from workers.settings import WorkerSettings

from .conftest import KUBE_VERSIONS, RELEASE, Helm, Manifests, with_kafka

COMPONENTS = ("gateway", "worker")
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def port_number(deployment: dict[str, Any], name: str) -> int:
    ports: dict[str, int] = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
    return ports[name]


def settings_from(config: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Any, ...]:
    """The app's settings objects as the pods would build them from the ConfigMap."""
    for key, value in config.items():
        monkeypatch.setenv(key, value)
    return GatewaySettings(), WorkerSettings(), KafkaSettings()


def test_every_resource_has_the_recommended_labels(everything: Manifests):
    for doc in everything.docs:
        labels = doc["metadata"]["labels"]
        for label in RECOMMENDED_LABELS:
            assert label in labels, f"{doc['kind']} {doc['metadata']['name']} lacks {label}"
        assert labels["app.kubernetes.io/instance"] == RELEASE


@pytest.mark.parametrize("component", COMPONENTS)
def test_selector_is_exactly_name_instance_component(helm: Helm, component: str):
    # Selectors are immutable: user podLabels must never reach them.
    manifests = helm.render(with_kafka({component: {"podLabels": {"team": "payments"}}}))
    deployment = manifests.deployment(component)
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "kafka-rpc-gateway",
        "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": component,
    }
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "payments"
    assert selector.items() <= pod_labels.items()


def test_gateway_service_selects_only_gateway_pods(default: Manifests):
    service = default.one("Service", "gateway")
    pod_labels = default.deployment("gateway")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert (
        not service["spec"]["selector"].items()
        <= default.deployment("worker")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ports_match_the_app_defaults(default: Manifests):
    assert port_number(default.deployment("gateway"), "http") == GatewaySettings.model_fields["port"].default
    assert (
        port_number(default.deployment("worker"), "metrics")
        == WorkerSettings.model_fields["metrics_port"].default
    )


def test_processes_are_the_documented_commands(default: Manifests):
    assert container(default.deployment("gateway"))["command"] == ["python", "-m", "gateway"]
    assert container(default.deployment("worker"))["command"] == ["python", "-m", "workers"]


@pytest.mark.parametrize(("component", "port"), [("gateway", "http"), ("worker", "metrics")])
def test_probes_hit_health_and_readiness_on_the_app_port(default: Manifests, component: str, port: str):
    spec = container(default.deployment(component))
    assert spec["startupProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert "enabled" not in spec["livenessProbe"]


def test_probe_can_be_disabled(helm: Helm):
    spec = container(
        helm.render(with_kafka({"gateway": {"startupProbe": {"enabled": False}}})).deployment("gateway")
    )
    assert "startupProbe" not in spec
    assert "livenessProbe" in spec


def test_config_env_is_read_by_the_app_settings(default: Manifests, monkeypatch: pytest.MonkeyPatch):
    gateway, worker, kafka = settings_from(default.config(), monkeypatch)
    assert gateway.port == port_number(default.deployment("gateway"), "http")
    assert worker.metrics_port == port_number(default.deployment("worker"), "metrics")
    assert gateway.request_topic == worker.request_topic == "requests"
    assert worker.reply_topics == {gateway.reply_topic}
    assert worker.handlers == ("workers.examples:registry",)
    assert kafka.bootstrap_servers == "kafka-bootstrap.kafka.svc:9092"
    assert gateway.catalog_topic == worker.catalog_topic == "rpc-catalog"
    assert gateway.unknown_methods == "reject"


def test_without_a_catalog_the_gateway_forwards_every_method(helm: Helm, monkeypatch: pytest.MonkeyPatch):
    manifests = helm.render(with_kafka({"topics": {"catalog": ""}}))
    gateway, worker, _ = settings_from(manifests.config(), monkeypatch)
    assert gateway.catalog_topic == worker.catalog_topic == ""
    assert gateway.unknown_methods == "forward"


def test_every_config_key_is_a_setting_the_app_reads(everything: Manifests):
    fields: dict[str, Collection[str]] = {
        "GATEWAY_AUTH_": AccessSettings.model_fields,
        "GATEWAY_": {*GatewaySettings.model_fields, "auth"},  # GATEWAY_AUTH is AccessSettings.mode
        "WORKER_": WorkerSettings.model_fields,
        "KAFKA_": KafkaSettings.model_fields,
    }
    for key in everything.config():
        if key in {"PYTHONDONTWRITEBYTECODE", "TMPDIR"}:
            continue
        prefix = next(prefix for prefix in fields if key.startswith(prefix))
        assert key.removeprefix(prefix).lower() in fields[prefix], f"{key} is not a {prefix}* setting"


def test_all_features_config_parses(everything: Manifests, monkeypatch: pytest.MonkeyPatch):
    gateway, _, kafka = settings_from(everything.config(), monkeypatch)
    access = AccessSettings()
    assert access.schemes == ("apikey", "jwt")
    assert access.policy is not None
    assert access.policy["routes"] == {"DELETE /orders/{order_id}": ["orders:admin"]}
    assert access.forward_claims == ["tenant"]
    assert access.max_pending_per_caller == 500
    assert str(access.api_keys_file) == "/etc/kafka-rpc-gateway/access/api-keys/keys.json"
    gateway_pod = everything.deployment("gateway")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in gateway_pod["containers"][0]["volumeMounts"]}
    assert mounts["api-keys"] == "/etc/kafka-rpc-gateway/access/api-keys"
    volume = {"name": "api-keys", "secret": {"secretName": "rpc-api-keys", "defaultMode": 0o440}}
    assert volume in gateway_pod["volumes"]
    worker_pod = everything.deployment("worker")["spec"]["template"]["spec"]
    assert "api-keys" not in {volume["name"] for volume in worker_pod["volumes"]}
    assert gateway.max_timeout == 60
    assert gateway.forward_headers == ["accept", "x-request-id"]
    assert gateway.publish_topics == ["events"]
    assert kafka.properties["linger.ms"] == 5
    assert kafka.properties["security.protocol"] == "SASL_SSL"


@pytest.mark.parametrize("component", COMPONENTS)
def test_restricted_security_context(everything: Manifests, component: str):
    pod = everything.deployment(component)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    containers = pod["containers"] + pod.get("initContainers", [])
    assert len(containers) == 2  # the app and, with SASL, the credentials init container
    for spec in containers:
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 1001
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        mounts = {mount["mountPath"]: mount["name"] for mount in spec["volumeMounts"]}
        assert mounts["/tmp"] == "tmp"
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]


def test_service_account_token_is_not_mounted(default: Manifests):
    assert default.one("ServiceAccount")["automountServiceAccountToken"] is False


def required_gateway_grace(config: dict[str, str], pre_stop: int, monkeypatch: pytest.MonkeyPatch) -> float:
    gateway, _, _ = settings_from(config, monkeypatch)
    needed: float = pre_stop + gateway.graceful_shutdown_seconds + gateway.flush_timeout
    return needed


def pre_stop_seconds(deployment: dict[str, Any]) -> int:
    pre_stop = container(deployment).get("lifecycle", {}).get("preStop")
    if pre_stop is None:
        return 0
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep"
    return int(command[1])


@pytest.mark.parametrize(
    "settings", [{}, {"maxTimeout": 120}, {"maxTimeout": 7.5, "defaultTimeout": 2}, {"shutdownGrace": 90}]
)
def test_gateway_grace_period_covers_prestop_drain_and_flush(
    helm: Helm, monkeypatch: pytest.MonkeyPatch, settings: dict[str, Any]
):
    manifests = helm.render(with_kafka({"gateway": {"settings": settings}}))
    deployment = manifests.deployment("gateway")
    pre_stop = pre_stop_seconds(deployment)
    assert pre_stop > 0  # load balancers need time to forget the pod
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    needed = required_gateway_grace(manifests.config(), pre_stop, monkeypatch)
    assert grace >= needed
    assert grace == math.ceil(needed + 5)  # plus the default margin, not more


def test_worker_grace_period_covers_the_drain(helm: Helm, monkeypatch: pytest.MonkeyPatch):
    manifests = helm.render(with_kafka({"worker": {"settings": {"drainTimeout": 45}}}))
    deployment = manifests.deployment("worker")
    _, worker, _ = settings_from(manifests.config(), monkeypatch)
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop_seconds(deployment) + worker.drain_timeout + 5


def test_explicit_grace_period_below_the_minimum_fails(helm: Helm):
    error = helm.render_error(with_kafka({"gateway": {"terminationGracePeriodSeconds": 30}}))
    assert "gateway.terminationGracePeriodSeconds=30 is too short" in error
    assert "needs at least 50" in error


def test_explicit_grace_period_above_the_minimum_is_kept(helm: Helm):
    manifests = helm.render(with_kafka({"gateway": {"terminationGracePeriodSeconds": 300}}))
    assert manifests.deployment("gateway")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 300


@pytest.mark.parametrize(("kube_version", "action"), list(zip(KUBE_VERSIONS, ["exec", "sleep"], strict=True)))
def test_prestop_uses_native_sleep_where_available(helm: Helm, kube_version: str, action: str):
    lifecycle = container(helm.render(with_kafka(), kube_version=kube_version).deployment("gateway"))[
        "lifecycle"
    ]
    assert list(lifecycle["preStop"]) == [action]


def checksum(manifests: Manifests, component: str) -> str:
    annotations = manifests.deployment(component)["spec"]["template"]["metadata"]["annotations"]
    value: str = annotations["checksum/config"]
    return value


@pytest.mark.parametrize("component", COMPONENTS)
def test_config_checksum_rolls_pods_only_when_config_changes(helm: Helm, default: Manifests, component: str):
    changed = helm.render(with_kafka({"gateway": {"settings": {"maxTimeout": 45}}}))
    unrelated = helm.render(with_kafka({"gateway": {"replicaCount": 5}}))
    assert len(checksum(default, component)) == 64
    assert checksum(changed, component) != checksum(default, component)
    assert checksum(unrelated, component) == checksum(default, component)


@pytest.mark.parametrize(("component", "port"), [("gateway", "8080"), ("worker", "9090")])
def test_prometheus_scrape_annotations(default: Manifests, component: str, port: str):
    annotations = default.deployment(component)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == port
    assert annotations["prometheus.io/path"] == "/metrics"


def test_image_defaults_to_app_version(default: Manifests):
    image = container(default.deployment("gateway"))["image"]
    assert image == "ghcr.io/kafka-rpc-gateway/kafka-rpc-gateway:0.1.0"
    assert container(default.deployment("worker"))["image"] == image

"""Optional features: autoscaling, Kafka secrets, schema errors, NetworkPolicy, Ingress, test hook, NOTES."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kafkarpc.connection import KafkaSettings

from .conftest import NAMESPACE, RELEASE, Helm, Manifests, with_kafka

MONITORING = "monitoring.coreos.com/v1"
SECRET_MARKERS = ("password", "secret", "jaas", "BEGIN")


# Autoscaling ---------------------------------------------------------------------------------


def test_gateway_hpa_drops_fixed_replicas(helm: Helm):
    manifests = helm.render(with_kafka({"gateway": {"autoscaling": {"enabled": True}}}))
    hpa = manifests.one("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == manifests.deployment("gateway")["metadata"]["name"]
    assert "replicas" not in manifests.deployment("gateway")["spec"]
    assert manifests.deployment("worker")["spec"]["replicas"] == 2


def test_keda_scales_workers_by_the_groups_lag(everything: Manifests, monkeypatch: pytest.MonkeyPatch):
    scaled = everything.one("ScaledObject")
    worker = everything.deployment("worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"]
    trigger = scaled["spec"]["triggers"][0]
    config = everything.config()
    assert trigger["metadata"]["consumerGroup"] == config["WORKER_GROUP_ID"]
    assert trigger["metadata"]["topic"] == config["WORKER_REQUEST_TOPIC"]
    assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    auth = everything.one("TriggerAuthentication")
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    parameters = {ref["parameter"]: (ref["name"], ref["key"]) for ref in auth["spec"]["secretTargetRef"]}
    assert parameters["password"] == ("rpc-kafka-user", "password")
    assert parameters["ca"] == ("kafka-cluster-ca", "ca.crt")
    # Never an HPA on the workload KEDA scales.
    assert all(
        hpa["spec"]["scaleTargetRef"]["name"] != worker["metadata"]["name"]
        for hpa in everything.all("HorizontalPodAutoscaler")
    )


def test_keda_is_skipped_where_the_cluster_does_not_serve_it(helm: Helm, notes_chart: Path):
    values = with_kafka({"worker": {"keda": {"enabled": True}}})
    manifests = helm.render(values)
    assert not manifests.all("ScaledObject")
    assert not manifests.all("TriggerAuthentication")
    # Nothing scales the workers then, so they keep their fixed replica count.
    assert manifests.deployment("worker")["spec"]["replicas"] == 2
    notes = render_notes(helm, notes_chart, values)
    assert "WARNING: worker.keda.enabled is set but the cluster does not serve keda.sh/v1alpha1" in notes
    served = helm.render(values, api_versions=["keda.sh/v1alpha1"])
    assert served.one("ScaledObject")
    assert "replicas" not in served.deployment("worker")["spec"]


def test_hpa_and_keda_on_the_same_workload_fail(helm: Helm):
    error = helm.render_error(
        with_kafka({"worker": {"autoscaling": {"enabled": True}, "keda": {"enabled": True}}})
    )
    assert "worker.autoscaling.enabled and worker.keda.enabled both target the worker Deployment" in error


def test_pdbs_default_to_one_unavailable(default: Manifests, everything: Manifests):
    for component in ("gateway", "worker"):
        pdb = default.one("PodDisruptionBudget", component)
        assert pdb["spec"] == {
            "maxUnavailable": 1,
            "selector": default.deployment(component)["spec"]["selector"],
        }
    assert everything.one("PodDisruptionBudget", "gateway")["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in everything.one("PodDisruptionBudget", "gateway")["spec"]
    assert everything.one("PodDisruptionBudget", "worker")["spec"]["maxUnavailable"] == "50%"


# Kafka connection ----------------------------------------------------------------------------


def test_sasl_and_tls_come_from_secrets_never_the_configmap(everything: Manifests):
    config = everything.config()
    assert not any(marker in value for value in config.values() for marker in SECRET_MARKERS)
    assert "Secret" not in everything.kinds()
    properties = json.loads(config["KAFKA_PROPERTIES"])
    pod = everything.deployment("gateway")["spec"]["template"]["spec"]
    app_mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert Path(config["KAFKA_PROPERTIES_FILE"]).parent == Path(app_mounts["kafka-client"])
    for key in ("ssl.ca.location", "ssl.certificate.location", "ssl.key.location"):
        assert Path(properties[key]).parent == Path(app_mounts["kafka-tls"])
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["kafka-sasl"]["secret"]["secretName"] == "rpc-kafka-user"
    assert volumes["kafka-tls"]["secret"]["secretName"] == "kafka-cluster-ca"
    assert volumes["kafka-client"]["emptyDir"]["medium"] == "Memory"
    # Only the init container sees the raw credentials.
    assert "kafka-sasl" not in app_mounts
    init = pod["initContainers"][0]
    assert config["KAFKA_PROPERTIES_FILE"] in init["command"][-1]


def test_extra_properties_reach_kafka_properties_and_win(helm: Helm):
    values = with_kafka(
        {
            "kafka": {
                "bootstrapServers": "b:9092",
                "tls": {"enabled": True},
                "extraProperties": {"security.protocol": "ssl", "linger.ms": 5},
            }
        }
    )
    properties = json.loads(helm.render(values).config()["KAFKA_PROPERTIES"])
    assert properties == {
        "security.protocol": "ssl",
        "linger.ms": 5,
        "ssl.endpoint.identification.algorithm": "https",
    }


def test_plaintext_by_default(default: Manifests):
    assert "KAFKA_PROPERTIES" not in default.config()
    assert "initContainers" not in default.deployment("gateway")["spec"]["template"]["spec"]


@pytest.mark.parametrize(("value", "eager"), [(True, True), (False, False), (None, True)])
def test_eager_send_reaches_both_components_settings(
    helm: Helm, value: bool | None, eager: bool, monkeypatch: pytest.MonkeyPatch
):
    """None: the value is missing, as after `helm upgrade --reuse-values` from a chart without it."""
    manifests = helm.render(with_kafka({"kafka": {"eagerSend": value}}))
    for key, setting in manifests.config().items():
        monkeypatch.setenv(key, setting)  # the ConfigMap is both containers' environment
    assert KafkaSettings().eager_send is eager


def test_secret_in_extra_properties_fails(helm: Helm):
    error = helm.render_error(
        with_kafka({"kafka": {"bootstrapServers": "b:9092", "extraProperties": {"sasl.password": "hunter2"}}})
    )
    assert "kafka.extraProperties.sasl.password looks like a secret" in error
    assert "hunter2" not in error


# values.schema.json --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"gateway": {"replicaCount": "two"}}, "at '/gateway/replicaCount': got string, want integer"),
        (
            {"gateway": {"settings": {"maxTimeout": "30s"}}},
            "at '/gateway/settings/maxTimeout': got string, want number",
        ),
        ({"worker": {"metricsPort": 70000}}, "at '/worker/metricsPort'"),
        (
            {"kafka": {"bootstrapServers": "b:9092", "sasl": {"enabled": True}}},
            "at '/kafka/sasl/existingSecret'",
        ),
        ({"gateway": {"service": {"type": "Cluster"}}}, "at '/gateway/service/type'"),
        ({"gatway": {}}, "additional properties 'gatway' not allowed"),
    ],
)
def test_schema_rejects_wrong_values_with_their_path(helm: Helm, values: dict[str, Any], message: str):
    error = helm.render_error(with_kafka(values))
    assert "values don't meet the specifications of the schema" in error
    assert message in error


def test_chart_managed_settings_cannot_be_overridden(helm: Helm):
    error = helm.render_error(with_kafka({"gateway": {"settings": {"port": 9000}}}))
    assert "gateway.settings.port is managed by the chart" in error


# NetworkPolicy, ingress, test hook, NOTES ----------------------------------------------------


def test_network_policy_admits_clients_metrics_kafka_and_the_collector_only(everything: Manifests):
    gateway = everything.one("NetworkPolicy", "gateway")
    assert gateway["spec"]["podSelector"] == everything.deployment("gateway")["spec"]["selector"]
    peers = gateway["spec"]["ingress"][0]["from"]
    assert {"podSelector": {"matchLabels": {f"{RELEASE}-kafka-rpc-gateway-client": "true"}}} in peers
    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert prometheus in peers  # the gateway's /metrics is on its API port
    worker = everything.one("NetworkPolicy", "worker")
    assert worker["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    egress_ports = [port["port"] for rule in worker["spec"]["egress"] for port in rule.get("ports", [])]
    assert egress_ports == [53, 53, 9093, 4318]  # DNS, kafkaEgress, extraEgress (the OTLP collector)
    test_pod = everything.one("Pod")
    assert test_pod["metadata"]["labels"][f"{RELEASE}-kafka-rpc-gateway-client"] == "true"


def test_ingress_routes_to_the_gateway_service(everything: Manifests):
    ingress = everything.one("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {
        "name": everything.one("Service", "gateway")["metadata"]["name"],
        "port": {"name": "http"},
    }


def test_helm_test_hook_posts_one_rpc_through_the_service(default: Manifests):
    pod = default.one("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    env = {item["name"]: item["value"] for item in pod["spec"]["containers"][0]["env"]}
    service = default.one("Service", "gateway")
    port = service["spec"]["ports"][0]["port"]
    assert env["RPC_URL"] == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/rpc/echo"
    script = pod["spec"]["containers"][0]["command"][-1]
    assert 'int(os.environ["RPC_EXPECT"])' in script
    assert env["RPC_EXPECT"] == "200"
    compile(script, "round-trip", "exec")  # the embedded program is valid Python
    context = pod["spec"]["containers"][0]["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["runAsNonRoot"] is True


def render_notes(helm: Helm, chart: Path, values: dict[str, Any]) -> str:
    notes: str = helm.render(values, chart=chart, show_only="templates/notes-under-test.yaml").one("Notes")[
        "notes"
    ]
    return notes


def test_notes_say_how_to_call_the_gateway(helm: Helm, notes_chart: Path):
    notes = render_notes(helm, notes_chart, with_kafka())
    service = f"{RELEASE}-kafka-rpc-gateway-gateway"
    assert f"kubectl port-forward -n {NAMESPACE} svc/{service} 8080:80" in notes
    assert "http://127.0.0.1:8080/rpc/echo" in notes
    assert f"helm test {RELEASE} -n {NAMESPACE} --logs" in notes
    assert "rpcgw_timeouts_total" in notes


def test_notes_warn_when_a_monitor_was_skipped(helm: Helm, notes_chart: Path):
    notes = render_notes(helm, notes_chart, with_kafka({"metrics": {"serviceMonitor": {"enabled": True}}}))
    assert (
        "WARNING: ServiceMonitor was requested but the cluster does not serve monitoring.coreos.com/v1"
        in notes
    )
    declared = render_notes(
        helm,
        notes_chart,
        with_kafka({"metrics": {"serviceMonitor": {"enabled": True}}, "apiVersions": [MONITORING]}),
    )
    assert "A ServiceMonitor was created." in declared

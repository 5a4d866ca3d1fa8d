"""Prometheus: scrape annotations are in test_workloads; monitors, their gating, and the alert rules."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from gateway.metrics import GatewayMetrics
from workers.metrics import WorkerMetrics

from .conftest import NAMESPACE, Helm, Manifests, with_kafka

MONITORING = "monitoring.coreos.com/v1"


def exported_metric_names() -> set[str]:
    """Every series name the gateway and worker expose, from their real registries."""
    text = generate_latest(GatewayMetrics(30.0, 100).registry) + generate_latest(WorkerMetrics().registry)
    return {line.split()[2] for line in text.decode().splitlines() if line.startswith("# TYPE")} | {
        re.split(r"[{ ]", line)[0] for line in text.decode().splitlines() if line and not line.startswith("#")
    }


MONITOR_ON = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


def test_monitoring_resources_are_off_by_default(default: Manifests):
    assert not {"ServiceMonitor", "PodMonitor", "PrometheusRule"} & set(default.kinds())


def test_monitoring_resources_need_the_api(helm: Helm):
    without_api = helm.render(with_kafka(MONITOR_ON))
    assert not {"ServiceMonitor", "PrometheusRule"} & set(without_api.kinds())
    by_capability = helm.render(with_kafka(MONITOR_ON), api_versions=[MONITORING])
    by_value = helm.render(with_kafka({**MONITOR_ON, "apiVersions": [MONITORING]}))
    for manifests in (by_capability, by_value):
        assert manifests.kinds().count("ServiceMonitor") == 2
        assert manifests.kinds().count("PrometheusRule") == 1


def test_service_monitors_select_services_with_the_named_port(everything: Manifests):
    services = everything.all("Service")
    for monitor in everything.all("ServiceMonitor"):
        selector = monitor["spec"]["selector"]["matchLabels"]
        matched = [s for s in services if selector.items() <= s["metadata"]["labels"].items()]
        assert len(matched) == 1, monitor["metadata"]["name"]
        port_names = {port["name"] for port in matched[0]["spec"]["ports"]}
        assert monitor["spec"]["endpoints"][0]["port"] in port_names
        assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_pod_monitors_use_container_port_names(helm: Helm):
    manifests = helm.render(
        with_kafka({"metrics": {"podMonitor": {"enabled": True}}}), api_versions=[MONITORING]
    )
    monitors = manifests.all("PodMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        pod = manifests.deployment(component)["spec"]["template"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        names = {port["name"] for port in pod["spec"]["containers"][0]["ports"]}
        assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in names


def test_service_and_pod_monitor_together_fail(helm: Helm):
    error = helm.render_error(
        with_kafka({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}})
    )
    assert "would scrape every pod twice" in error


def test_alerts_use_metrics_the_app_exports(everything: Manifests):
    rules = everything.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    alerts = {rule["alert"]: rule["expr"] for rule in rules}
    assert "rpcgw_timeouts_total" in alerts["RPCGatewayHighTimeoutRate"]
    assert "rpcgw_requests_total" in alerts["RPCGatewayHighTimeoutRate"]
    assert "rpcworker_consumer_lag" in alerts["RPCWorkerConsumerLag"]
    referenced = {name for expr in alerts.values() for name in re.findall(r"\brpc(?:gw|worker)_\w+", expr)}
    assert referenced <= exported_metric_names()
    assert f'namespace="{NAMESPACE}"' in alerts["RPCGatewayHighTimeoutRate"]

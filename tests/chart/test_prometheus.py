"""Prometheus and Grafana: scrape annotations are in test_workloads; monitors, their gating, the
alert rules' wiring and the dashboard's ConfigMap. The rules' behaviour is tested with promtool in
tests/monitoring/test_rules.py, the dashboard's queries in tests/monitoring/test_dashboard.py."""

from __future__ import annotations

import json

from ..monitoring.metricnames import PROMETHEUS_SERIES, exported_names, promql_metric_names
from .conftest import CHART, NAMESPACE, Helm, Manifests, with_kafka

MONITORING = "monitoring.coreos.com/v1"
DASHBOARD = CHART / "dashboards" / "kafka-rpc-gateway.json"


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
    assert promql_metric_names(alerts["RPCGatewayHighTimeoutRate"]) == {
        "rpcgw_timeouts_total",
        "rpcgw_requests_total",
    }
    assert promql_metric_names(alerts["RPCWorkerConsumerLag"]) == {"rpcworker_consumer_lag"}
    exported = exported_names() | PROMETHEUS_SERIES
    for name, expr in alerts.items():
        assert promql_metric_names(expr), name
        assert promql_metric_names(expr) <= exported, name
    assert f'namespace="{NAMESPACE}"' in alerts["RPCGatewayHighTimeoutRate"]


def test_every_alert_names_what_it_is_about(everything: Manifests):
    rules = {rule["alert"]: rule for rule in everything.one("PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert "by (namespace, method)" in rules["RPCGatewayHighTimeoutRate"]["expr"]
    assert "{{ $labels.method }}" in rules["RPCGatewayHighTimeoutRate"]["annotations"]["summary"]
    for name in ("RPCWorkerConsumerLag", "RPCWorkerDown"):
        assert rules[name]["labels"]["group"] == "rpc-workers"
        assert rules[name]["labels"]["topic"] == "requests"
        assert "rpc-workers" in rules[name]["annotations"]["summary"]
    for name, rule in rules.items():
        assert rule["labels"]["deployment"].startswith("rpc-kafka-rpc-gateway-"), name
        # ci/all-features-values.yaml sets runbookBaseUrl.
        assert rule["annotations"]["runbook_url"] == f"https://wiki.example.com/rpc/RUNBOOK.md#{name.lower()}"


def test_dashboard_is_off_by_default(default: Manifests):
    assert [doc["metadata"]["name"] for doc in default.all("ConfigMap")] == ["rpc-kafka-rpc-gateway-env"]


def test_dashboard_configmap_carries_the_sidecar_label_and_the_file(everything: Manifests):
    (dashboard,) = [
        doc for doc in everything.all("ConfigMap") if doc["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["namespace"] == NAMESPACE
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["labels"]["team"] == "payments"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "RPC"}
    assert json.loads(dashboard["data"]["kafka-rpc-gateway.json"]) == json.loads(DASHBOARD.read_text())


def test_dashboard_label_and_namespace_are_values(helm: Helm):
    values = {
        "metrics": {
            "grafanaDashboard": {
                "enabled": True,
                "namespace": "monitoring",
                "sidecarLabel": "grafana.example.com/dashboard",
                "sidecarLabelValue": "rpc",
            }
        }
    }
    (dashboard,) = [
        doc
        for doc in helm.render(with_kafka(values)).all("ConfigMap")
        if doc["metadata"]["name"].endswith("-dashboard")
    ]
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana.example.com/dashboard"] == "rpc"
    assert "grafana_dashboard" not in dashboard["metadata"]["labels"]


def test_dashboard_label_value_must_be_a_string(helm: Helm):
    error = helm.render_error(
        with_kafka({"metrics": {"grafanaDashboard": {"enabled": True, "sidecarLabelValue": 1}}})
    )
    assert "sidecarLabelValue" in error

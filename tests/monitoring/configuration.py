"""The chart as a Prometheus configuration, as a cluster's Prometheus would be configured.

`scrape_jobs` turns the chart's ServiceMonitors into static scrape jobs with the target
labels the prometheus-operator gives (``job`` and ``service`` the Service's name,
``namespace``, ``pod``, ``endpoint``, ``container``), so the chart's PrometheusRule, whose
selectors use ``namespace`` and ``pod``, matches what a local gateway and worker expose.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ..chart.conftest import NAMESPACE, Helm, Manifests, with_kafka
from .prometheus import tool_output

MONITORING_API = "monitoring.coreos.com/v1"


def monitoring_values(interval: str) -> dict[str, Any]:
    """Chart values that render the ServiceMonitors (scraping every ``interval``) and the rules."""
    return {
        "apiVersions": [MONITORING_API],
        "metrics": {
            "serviceMonitor": {"enabled": True, "interval": interval, "scrapeTimeout": interval},
            "prometheusRule": {"enabled": True},
        },
    }


def render_monitoring(interval: str) -> Manifests:
    """The chart as `monitoring_values` renders it, with helm from tools/helm.sh (for scripts;
    tests use their ``monitored`` fixture)."""
    return Helm(tool_output("helm.sh")).render(with_kafka(monitoring_values(interval)))


def configuration(
    manifests: Manifests, ports: Mapping[str, int], rules: Path, interval: str
) -> dict[str, Any]:
    """A prometheus.yml: the chart's ServiceMonitors as scrape jobs of the local ``ports``, and
    its PrometheusRule, written to ``rules``, evaluated every ``interval``."""
    rules.write_text(yaml.safe_dump(rule_file(manifests)))
    return {
        "global": {"evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": scrape_jobs(manifests, ports),
    }


def rule_file(manifests: Manifests) -> dict[str, Any]:
    """The PrometheusRule's groups as a Prometheus rule file (what the operator hands Prometheus)."""
    spec: dict[str, Any] = manifests.one("PrometheusRule")["spec"]
    return {"groups": spec["groups"]}


def scrape_jobs(manifests: Manifests, ports: Mapping[str, int]) -> list[dict[str, Any]]:
    """One static scrape job per ServiceMonitor, at ``127.0.0.1:<ports[component]>``.

    The labels are those the operator's relabelling gives a pod behind the Service; the pod
    name is the Deployment's name plus a suffix, as a ReplicaSet's pods are named.
    """
    jobs = []
    for monitor in manifests.all("ServiceMonitor"):
        name = monitor["metadata"]["name"]
        component = monitor["metadata"]["labels"]["app.kubernetes.io/component"]
        (endpoint,) = monitor["spec"]["endpoints"]
        labels = {
            "namespace": NAMESPACE,
            "service": name,
            "endpoint": endpoint["port"],
            "pod": f"{name}-local",
            "container": component,
        }
        jobs.append(
            {
                "job_name": name,
                "metrics_path": endpoint["path"],
                "scrape_interval": endpoint["interval"],
                "scrape_timeout": endpoint["scrapeTimeout"],
                "static_configs": [{"targets": [f"127.0.0.1:{ports[component]}"], "labels": labels}],
            }
        )
    return jobs

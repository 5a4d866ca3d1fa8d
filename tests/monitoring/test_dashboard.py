"""The Grafana dashboard the chart ships: valid PromQL (the real promtool parses every query)
reading only series the gateway and the worker expose, with the panels operators need."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..chart.conftest import CHART, NAMESPACE
from .metricnames import exported_names, promql_metric_names
from .prometheus import Binaries

DASHBOARD = CHART / "dashboards" / "kafka-rpc-gateway.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# What Grafana puts in place of the dashboard's variables, for promtool's parser.
VARIABLES = {"$__rate_interval": "1m", "$namespace": NAMESPACE, "$method": ".*"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def targets(dashboard: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(panel title, target) for every query of every panel."""
    return [(panel["title"], target) for panel in dashboard["panels"] for target in panel["targets"]]


def substituted(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"a variable this test does not know: {expr}"
    return expr


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The series selectors of the query variables, ``label_values(<selector>, <label>)``."""
    found = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["query"]["query"])
            assert match, variable["query"]["query"]
            found.append(match.group(1))
    return found


def test_promtool_parses_every_query(binaries: Binaries, dashboard: dict[str, Any], tmp_path: Path) -> None:
    # As recording rules, the dashboard's queries go through Prometheus' own parser.
    rules = [
        {"record": f"dashboard:panel{index}:{target['refId']}", "expr": substituted(target["expr"])}
        for index, (_, target) in enumerate(targets(dashboard))
    ]
    rules += [
        {"record": f"dashboard:variable{index}", "expr": substituted(selector)}
        for index, selector in enumerate(variable_queries(dashboard))
    ]
    path = tmp_path / "dashboard.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = binaries.run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_every_query_reads_metrics_the_code_registers(dashboard: dict[str, Any]) -> None:
    exported = exported_names()
    for title, target in targets(dashboard):
        names = promql_metric_names(target["expr"])
        assert names, f"{title}: no metric in {target['expr']}"
        assert names <= exported, f"{title} reads {names - exported}, which nothing exports"
    for selector in variable_queries(dashboard):
        assert promql_metric_names(selector) <= exported


def test_panels_cover_what_operators_look_at(dashboard: dict[str, Any]) -> None:
    read = {name for _, target in targets(dashboard) for name in promql_metric_names(target["expr"])}
    assert read >= {
        "rpcgw_requests_total",
        "rpcgw_request_duration_seconds_bucket",
        "rpcgw_timeouts_total",
        "rpcgw_pending_requests",
        "rpcgw_reply_consumer_lag",
        "rpcgw_shed_requests_total",
        "rpcworker_consumer_lag",
    }
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def test_latency_panel_shows_p50_p99_with_exemplars(dashboard: dict[str, Any]) -> None:
    (latency,) = [panel for panel in dashboard["panels"] if "Latency" in panel["title"]]
    quantiles = set(
        re.findall(r"histogram_quantile\(([0-9.]+),", " ".join(t["expr"] for t in latency["targets"]))
    )
    assert quantiles == {"0.5", "0.99"}
    assert all(target["exemplar"] for target in latency["targets"])
    assert latency["fieldConfig"]["defaults"]["unit"] == "s"


def test_every_query_uses_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert (variable["name"], variable["query"]) == ("datasource", "prometheus")
    for panel in dashboard["panels"]:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert all(target["datasource"] == DATASOURCE for target in panel["targets"]), panel["title"]
    for query in (v for v in dashboard["templating"]["list"] if v["type"] == "query"):
        assert query["datasource"] == DATASOURCE

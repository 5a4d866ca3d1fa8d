"""The two readings the dashboard and rule checks rest on: names from registries, names in PromQL."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from .metricnames import exported_names, exposed, promql_metric_names


def test_names_come_from_the_family_types() -> None:
    registry = CollectorRegistry()
    Counter("c", "A counter.", ["method"], registry=registry)  # no child yet: still exposed
    Histogram("h_seconds", "A histogram.", registry=registry)
    Gauge("g", "A gauge.", registry=registry)
    Info("i", "An info.", registry=registry)
    assert exposed(registry) == {
        "c_total",
        "c_created",
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "h_seconds_created",
        "g",
        "i_info",
    }


def test_the_gateway_and_worker_registries_are_read() -> None:
    names = exported_names()
    assert {"rpcgw_requests_total", "rpcgw_request_duration_seconds_bucket", "rpcgw_build_info"} <= names
    assert {"rpcgw_connections_open", "rpcworker_consumer_lag", "rpcworker_handled_total"} <= names
    assert "rpcgw_requests" not in names  # a counter is read as <name>_total


def test_metric_names_of_promql() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{method=~"x|y", job="b"}[$__rate_interval])))'
        " / on (namespace) group_left () sum without (pod) (b_total offset 5m) > 0.5"
        ' and absent(up{pod=~"c-.*"} == 1) or vector(1) unless count(d) by (e) > bool 1e3'
    )
    assert promql_metric_names(expr) == {"a_bucket", "b_total", "up", "d"}
    assert promql_metric_names('sum(rate(x_total{outcome!~"ok|accepted"}[5m]))') == {"x_total"}

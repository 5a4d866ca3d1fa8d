"""A real Prometheus scrapes a real gateway and worker, started as ``make run`` starts them.

Prometheus is configured from the chart: scrape jobs from its ServiceMonitors (1 s interval)
with the target labels the prometheus-operator gives, and its PrometheusRule as the rule file.
Through Prometheus' query API: calls that outlast their ``Prefer: wait`` must show in
``rpcgw_timeouts_total`` of their method only, callers' ``Prefer: wait=0`` must not, and the
chart's timeout alert must go pending for that method; with tracing on, the latency
histogram's exemplars must carry trace ids. Every wait polls the API against a deadline.
Kafka is real (devstack's own broker, or ``KAFKA_BOOTSTRAP_SERVERS``); without it the stack
does not start and the test fails with devstack's log.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from ..chart.conftest import NAMESPACE, Manifests
from .configuration import configuration
from .conftest import SCRAPE_INTERVAL
from .prometheus import Binaries, Prometheus
from .stack import Caller, LocalStack

pytestmark = pytest.mark.integration  # real Kafka: tests/conftest.py turns a skip into a failure

WITHIN = 20.0
"""Seconds for a change to reach Prometheus: 1 s scrapes and rule evaluations, on a busy machine."""
METHOD = "sleep"
"""workers/examples.py: answers after ``seconds``; asked for 5 s with ``Prefer: wait=1``, it times out."""
SLOW = b'{"seconds": 5}'
BURST = 4


TRACED = {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER": "always_on"}
"""``make run`` with tracing on: spans to the stack's log, every call sampled, so every latency
observation carries its trace id as an exemplar."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("devstack"), TRACED) as running:
        yield running


@pytest.fixture(scope="module")
def prometheus(
    binaries: Binaries, monitored: Manifests, stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    workdir = tmp_path_factory.mktemp("prometheus")
    config = configuration(monitored, stack.ports, workdir / "rules.yaml", SCRAPE_INTERVAL)
    with Prometheus(binaries, workdir, config) as server:
        yield server


def test_prometheus_sees_the_timeouts_of_one_method(
    monitored: Manifests, stack: LocalStack, prometheus: Prometheus
) -> None:
    # Jobs named as the operator names them: after the ServiceMonitors' Services.
    jobs = {
        monitor["metadata"]["labels"]["app.kubernetes.io/component"]: monitor["metadata"]["name"]
        for monitor in monitored.all("ServiceMonitor")
    }
    gateway, worker = jobs["gateway"], jobs["worker"]
    prometheus.wait_for(f'count(up{{namespace="{NAMESPACE}"}} == 1) == 2', WITHIN)
    assert {sample.labels["job"] for sample in prometheus.query("up == 1")} == {gateway, worker}
    prometheus.wait_for(f'rpcworker_consumer_lag{{job="{worker}", pod="{worker}-local"}}', WITHIN)

    caller = Caller(stack.gateway_url)
    started = time.time()
    assert caller.burst("echo", b'{"ping": 1}', 2) == [200, 200]
    # Scraped as OpenMetrics, the latency histogram brings the calls' trace ids along.
    exemplars = prometheus.until(
        lambda: prometheus.query_exemplars(
            'rpcgw_request_duration_seconds_bucket{method="echo"}', started - 1, time.time() + 1
        ),
        WITHIN,
        "exemplars of echo",
    )
    assert all(re.fullmatch(r"[0-9a-f]{32}", labels["trace_id"]) for labels, _, _ in exemplars)
    # Callers' own deadline: 504 at once, outcome caller_deadline, not a timeout.
    assert caller.burst(METHOD, SLOW, 3, wait=0) == [504] * 3
    prometheus.wait_for(f'rpcgw_requests_total{{method="{METHOD}", outcome="caller_deadline"}} == 3', WITHIN)
    # The method's timeout series exists at 0 from its first call, so its first timeouts count.
    (zero,) = prometheus.wait_for(f'rpcgw_timeouts_total{{method="{METHOD}"}}', WITHIN)
    assert zero.value == 0

    assert caller.burst(METHOD, SLOW, BURST, wait=1) == [504] * BURST
    (timeouts,) = prometheus.wait_for(f'rpcgw_timeouts_total{{method="{METHOD}"}} == {BURST}', WITHIN)
    assert timeouts.labels["job"] == gateway
    assert timeouts.labels["pod"] == f"{gateway}-local"
    (increase,) = prometheus.query(f'increase(rpcgw_timeouts_total{{method="{METHOD}"}}[1m])')
    assert increase.value > 0
    assert not prometheus.query('rpcgw_timeouts_total{method="echo"} > 0')

    # The chart's rule, on these series: pending (its `for` is 10m) for this method only.
    alert = f'ALERTS{{alertname="RPCGatewayHighTimeoutRate", alertstate="pending", method="{METHOD}"}}'
    (pending,) = prometheus.wait_for(alert, WITHIN)
    assert pending.labels["namespace"] == NAMESPACE
    assert not prometheus.query('ALERTS{alertname="RPCGatewayHighTimeoutRate", method="echo"}')

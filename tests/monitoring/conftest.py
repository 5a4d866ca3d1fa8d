"""The real Prometheus tools and the chart rendered for monitoring.

`binaries` builds prometheus and promtool with tools/prometheus.sh; `helm` builds helm. A
build that fails fails every test asking for it, and no test in this folder may pass by
being skipped.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest

from ..chart.conftest import Helm, Manifests, built_helm, with_kafka
from .configuration import monitoring_values
from .prometheus import Binaries, ToolError

SCRAPE_INTERVAL = "1s"
"""The ServiceMonitors' interval in these tests, so a change shows in Prometheus within seconds."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and "tests/monitoring/" in item.nodeid and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"monitoring test skipped, which this folder forbids: {report.longrepr}"
    return report


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    """prometheus and promtool, built once into the cache by tools/prometheus.sh."""
    try:
        return Binaries.build()
    except ToolError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def helm() -> Helm:
    """The real helm binary from tools/helm.sh."""
    return built_helm()


@pytest.fixture(scope="session")
def monitored(helm: Helm) -> Manifests:
    """The chart's defaults with the ServiceMonitors (1 s interval) and the PrometheusRule on."""
    return helm.render(with_kafka(monitoring_values(SCRAPE_INTERVAL)))

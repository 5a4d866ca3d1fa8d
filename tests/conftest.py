"""Suite-wide rule: a test marked ``integration`` (real Kafka) never passes by being skipped.

The real-broker tiers (tests/integration, tests/bench, tests/chaos) fail loudly when Kafka
cannot run; a skip there, for whatever reason, is reported as a failure.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and item.get_closest_marker("integration") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped, which this tier forbids: {report.longrepr}"
    return report

"""Suite-wide rules.

A test marked ``integration`` (real Kafka) never passes by being skipped: the real-broker tiers
(tests/integration, tests/bench, tests/chaos) fail loudly when Kafka cannot run; a skip there,
for whatever reason, is reported as a failure.

The processes the tests start take Ctrl-C as a terminal gives it, however the suite was started.
"""

from __future__ import annotations

import signal
from collections.abc import Generator

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a shell without job control (``make test &``, nohup)
    # inherits SIGINT ignored, and so would every process it starts: Python then installs no
    # handler, and the signal tests' children would not stop on SIGINT. A handler of our own is
    # reset to the default in each child at exec, where an ignored signal stays ignored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.skipped and item.get_closest_marker("integration") and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"integration test skipped, which this tier forbids: {report.longrepr}"
    return report

"""Smoke run of the cancellation benchmark against the real stack: a broker, a worker, two gateways.

A dozen calls per burst, one round; the CPU figures are not judged (CI machines are noisy),
only that the A/B is what it claims (cancels in the ``on`` arm only, every handler finished in
the ``off`` arm) and that the report is whole. The summary arithmetic is checked offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.cancellation import ARMS, KINDS, PLANS, checks, finished, summarise
from tests.bench.smoke import run_smoke

SMOKE = PLANS["smoke"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    return run_smoke("bench.cancellation", "cancellation", tmp_path_factory.mktemp("bench-cancellation"))


@pytest.mark.integration
def test_only_the_on_arm_cancels_and_the_off_arm_finishes_every_call(
    report: tuple[Path, dict[str, Any]],
) -> None:
    document = report[1]
    assert all(document["checks"].values()), document["checks"]
    bursts = document["bursts"]
    assert {(row["kind"], row["arm"]) for row in bursts} == {(kind, arm) for kind in KINDS for arm in ARMS}
    for row in bursts:
        worker = row["worker"]
        assert row["calls"] == SMOKE.calls
        assert row["callers"]["left"] == SMOKE.calls, row
        assert row["cpu_seconds"]["worker"] > 0, row
        assert finished({**worker, "in_flight": 0}) == SMOKE.calls, row
        if row["arm"] == "off":
            assert worker["handled_ok"] == SMOKE.calls, row
            assert row["cancels_applied_seconds"] is None
        else:
            # Every cancel reached the worker: in time (running, queued) or after the handler ended.
            reached = worker["cancels_running"] + worker["cancels_queued"] + worker["cancels_unknown"]
            assert reached == SMOKE.calls, row


@pytest.mark.integration
def test_report_has_figures_for_each_kind_and_a_table(report: tuple[Path, dict[str, Any]]) -> None:
    out, document = report
    for kind in KINDS:
        figures = document["figures"][kind]
        assert figures["off"]["completed"] == SMOKE.calls
        assert figures["off"]["worker_cpu_seconds"] > 0
        assert figures["ratio_off_on"] is not None
    text = (out / "cancellation-smoke.md").read_text()
    assert "| handler | arm | rounds | worker CPU-s |" in text
    assert "## Every burst, in run order" in text


def _burst(kind: str, arm: str, worker_cpu: float, cancelled: int) -> dict[str, Any]:
    calls = 10
    return {
        "kind": kind,
        "arm": arm,
        "calls": calls,
        "callers": {"left": calls, "answered": 0, "closed": 0, "failed": 0},
        "cpu_seconds": {"worker": worker_cpu, "gateway_on": 0.1, "gateway_off": 0.1, "broker": 0.2},
        "window_seconds": 2.0,
        "drain_seconds": 1.5,
        "cancels_applied_seconds": 0.3 if arm == "on" else None,
        "slowest_scrape_seconds": 0.01,
        "gateway_cancels_sent": calls if arm == "on" else 0,
        "worker": {
            "handled_ok": calls - cancelled,
            "handled_cancelled": cancelled,
            "cancels_running": cancelled if arm == "on" else 0,
            "cancels_queued": 0,
            "expired": 0,
        },
    }


def test_summary_takes_medians_and_the_off_on_ratio() -> None:
    bursts = [
        _burst("thread", "on", 1.0, 10),
        _burst("thread", "off", 8.0, 0),
        _burst("thread", "on", 2.0, 10),
        _burst("thread", "off", 10.0, 0),
        _burst("thread", "on", 3.0, 10),
        _burst("thread", "off", 9.0, 0),
    ]
    figures = summarise(bursts, {"worker": 0.1}, ["thread"])["thread"]
    assert figures["on"]["worker_cpu_seconds"] == 2.0
    assert figures["off"]["worker_cpu_seconds"] == 9.0
    assert figures["on"]["worker_cpu_above_idle"] == pytest.approx(1.8)  # 0.1 cores x 2 s
    assert figures["ratio_off_on"] == 4.5
    assert figures["ratio_off_on_per_round"] == [8.0, 5.0, 3.0]
    assert figures["saved_fraction"] == pytest.approx(1 - 2 / 9, abs=1e-4)
    assert all(checks(bursts).values())
    assert not checks([*bursts, _burst("async", "off", 1.0, 1)])["off_arm_completed_every_call"]


def test_a_burst_is_finished_when_every_request_is_accounted_for_once() -> None:
    delta = {
        "handled_ok": 3,
        "handled_client_error": 0,
        "handled_server_error": 0,
        "handled_expired": 1,
        "handled_cancelled": 4,
        "cancels_running": 4,
        "cancels_queued": 2,
        "cancels_unknown": 0,
        "expired": 3,  # one while handling (also counted above), two before their handler ran
        "in_flight": 0,
    }
    assert finished(delta) == 3 + 1 + 4 + 2 + 2

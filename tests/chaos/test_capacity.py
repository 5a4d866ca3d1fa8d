"""A chaos load's outcomes judged as a benchmark step."""

from __future__ import annotations

import pytest

from chaos.capacity import SLO_P99_MS, step_of
from chaos.load import Outcome


def _calls(rate: float, elapsed: list[float], status: int = 200) -> list[Outcome]:
    return [
        Outcome(f"n{i}", "http://gw", status, seconds, 2.0, True, False, i / rate)
        for i, seconds in enumerate(elapsed)
    ]


def test_a_step_on_schedule_within_the_slo_is_healthy() -> None:
    step = step_of(_calls(500.0, [0.004] * 980 + [0.020] * 20), 500.0)
    assert (step.sent, step.ok, step.errors, step.timeouts) == (1000, 1000, 0, 0)
    assert round(step.achieved_rate) == 500
    assert step.latency_ms["p50"] == pytest.approx(4.0, rel=1e-3)  # HdrHistogram: 3 digits
    assert step.healthy(SLO_P99_MS)


def test_a_slow_tail_an_error_or_a_timeout_each_make_a_step_unhealthy() -> None:
    slow = step_of(_calls(500.0, [0.004] * 980 + [0.040] * 20), 500.0)
    assert slow.latency_ms["p99"] == pytest.approx(40.0, rel=1e-3)
    assert not slow.healthy(SLO_P99_MS)

    answered = _calls(500.0, [0.004] * 1000)
    refused = step_of([*answered, *_calls(500.0, [0.001], status=503)], 500.0)
    assert (refused.ok, refused.errors, refused.timeouts) == (1000, 1, 0)
    assert not refused.healthy(SLO_P99_MS)
    timed_out = step_of([*answered, *_calls(500.0, [2.0], status=504)], 500.0)
    assert (timed_out.errors, timed_out.timeouts) == (0, 1)
    assert not timed_out.healthy(SLO_P99_MS)


def test_a_harness_that_fell_behind_the_schedule_did_not_achieve_the_rate() -> None:
    behind = step_of(_calls(400.0, [0.004] * 1000), 500.0)  # sent at 400/s where 500/s was asked
    assert round(behind.achieved_rate) == 400
    assert not behind.healthy(SLO_P99_MS)

"""What the soak calls a leak: growth in both halves of the run, not one step."""

from __future__ import annotations

import pytest

from chaos.memory import halves, trend

MINUTES = range(0, 26 * 60, 10)  # the soak's fitted window, one sample every 10 s


def test_one_step_fits_as_a_slope_over_the_run_but_leaves_one_half_flat() -> None:
    stepped = [(t, 53.6 if t < 13 * 60 else 55.5) for t in MINUTES]
    whole = trend(stepped)
    assert whole is not None
    assert whole.slope > 5.0  # the line through the run mistakes the step for growth
    early, late = halves(stepped)
    assert early is not None
    assert late is not None
    assert min(early.slope, late.slope) == pytest.approx(0.0, abs=1e-9)


def test_steady_growth_shows_in_both_halves() -> None:
    leaking = [(t, 53.6 + 6.0 * t / 3600) for t in MINUTES]  # 6 MiB/h
    early, late = halves(leaking)
    assert early is not None
    assert late is not None
    assert early.slope == pytest.approx(6.0)
    assert late.slope == pytest.approx(6.0)


def test_too_few_samples_give_no_trend() -> None:
    assert halves([]) == (None, None)
    assert halves([(0.0, 50.0), (10.0, 50.0)]) == (None, None)

"""The open-loop sweep's search (shared by S and the baselines side by side), on made-up steps."""

from __future__ import annotations

from collections.abc import Callable

from bench.step import Step
from bench.suite import sweep

SLO = 25.0


def _step(rate: float, p99: float, achieved_share: float = 1.0) -> Step:
    return Step(
        target="S",
        mode="open",
        offered_rate=rate,
        concurrency=1,
        seconds=1.0,
        sent=100,
        ok=100,
        achieved_rate=rate * achieved_share,
        latency_ms={"p99": p99},
    )


def _knee(rate: float) -> Step:
    """Healthy up to 600/s, over the SLO up to 900/s, saturated above."""
    if rate <= 600:
        return _step(rate, 5.0)
    if rate <= 900:
        return _step(rate, 40.0)
    return _step(rate, 400.0, achieved_share=0.5)


def _recording(measure: Callable[[float], list[Step]]) -> tuple[list[float], Callable[[float], list[Step]]]:
    calls: list[float] = []

    def run(rate: float) -> list[Step]:
        calls.append(rate)
        return measure(rate)

    return calls, run


def test_stops_at_saturation_then_bisects_below_the_first_unhealthy_rate() -> None:
    calls, run = _recording(lambda rate: [_knee(rate)])
    sustained, unhealthy = sweep([200, 400, 800, 1000, 1200], run, SLO, bisect_steps=2)
    assert calls == [200, 400, 800, 1000, 600, 700]
    assert sustained == 600
    assert unhealthy == []


def test_climbs_past_the_planned_rates_only_while_healthy_and_only_when_asked() -> None:
    calls, run = _recording(lambda rate: [_knee(rate)])
    # 620/s is over the SLO: the climb ends there, one of its three steps unused.
    assert sweep([200, 400], run, SLO, bisect_steps=0, climb=3) == (500, [])
    assert calls == [200, 400, 500, 620]
    calls, run = _recording(lambda rate: [_knee(rate)])
    assert sweep([200, 400], run, SLO, bisect_steps=0) == (400, [])
    assert calls == [200, 400]


def test_a_rate_is_healthy_only_when_every_step_at_it_is() -> None:
    # The second side is over the SLO at 400/s alone: a noisy step, reported below the sustained rate.
    def both(rate: float) -> list[Step]:
        return [_knee(rate), _step(rate, 30.0 if rate == 400 else 5.0)]

    calls, run = _recording(both)
    assert sweep([200, 400, 600, 1000], run, SLO, bisect_steps=0) == (600, [400])
    assert calls == [200, 400, 600, 1000]


def test_one_saturated_side_ends_the_sweep() -> None:
    calls, run = _recording(lambda rate: [_step(rate, 5.0), _step(rate, 5.0, achieved_share=0.5)])
    assert sweep([200, 400], run, SLO, bisect_steps=1) == (None, [])
    assert calls == [200]


def _hump(rate: float) -> Step:
    """Healthy up to 600/s, saturated up to 1000/s, healthy again above (a client that batches)."""
    if rate <= 600 or rate > 1000:
        return _step(rate, 5.0)
    return _step(rate, 400.0)


def test_the_whole_plan_measures_past_saturation_without_moving_the_sustained_rate() -> None:
    calls, run = _recording(lambda rate: [_hump(rate)])
    sustained, unhealthy = sweep([200, 400, 800, 1000, 1200], run, SLO, bisect_steps=1, whole_plan=True)
    # The bisection below 800/s comes first, then the planned rates above it.
    assert calls == [200, 400, 800, 600, 1000, 1200]
    assert (sustained, unhealthy) == (600, [])
    calls, run = _recording(lambda rate: [_hump(rate)])
    assert sweep([200, 400, 800, 1000, 1200], run, SLO, bisect_steps=1) == (600, [])
    assert calls == [200, 400, 800, 600]

"""The deadline invariant: what a late call counts against the gateway."""

from __future__ import annotations

from chaos.load import Outcome
from chaos.report import Figures


def _late(past_deadline: float, harness_lag: float = 0.0) -> Outcome:
    return Outcome("n", "http://gw", 504, 2.0 + past_deadline, 2.0, None, False, 0.0, "no reply", harness_lag)


def _deadline_violations(figures: Figures) -> list[str]:
    figures.check_invariants()
    return [v for v in figures.violations if "past a deadline" in v]


def test_a_late_answer_breaks_the_invariant_unless_the_gateway_waited_for_a_cpu() -> None:
    unexplained = Figures("late", "a late answer")
    unexplained.add_outcomes([_late(0.3)])
    assert _deadline_violations(unexplained) == [
        "answered 300 ms past a deadline net of harness stalls or gateway CPU waits "
        "(300 ms net of harness stalls, 300 ms raw; limit 100 ms)"
    ]

    starved = Figures("late", "a late answer while the gateway waited 250 ms for a CPU")
    late = [_late(0.3), _late(0.15)]  # the second answered by a gateway that never waited
    starved.add_outcomes(late)
    starved.add_cpu_waits(late, [0.25, 0.0])
    assert _deadline_violations(starved) == [
        "answered 150 ms past a deadline net of harness stalls or gateway CPU waits "
        "(300 ms net of harness stalls, 300 ms raw; limit 100 ms)"
    ]
    starved.violations.clear()
    starved.add_cpu_waits([_late(0.4)], [0.35])  # a later load of the same scenario keeps the worst
    assert starved.worst_past_deadline_own is not None
    assert round(starved.worst_past_deadline_own, 3) == 0.15


def test_a_harness_stall_and_a_cpu_wait_in_the_same_overrun_are_not_both_excused() -> None:
    # One starved machine: the harness stalled 200 ms and the gateway waited 150 ms, in one 350 ms overrun.
    figures = Figures("late", "harness and gateway starved together")
    late = [_late(0.35, harness_lag=0.2)]
    figures.add_outcomes(late)
    figures.add_cpu_waits(late, [0.15])

    assert figures.worst_past_deadline_own is not None
    assert round(figures.worst_past_deadline_own, 3) == 0.15  # 350 - max(200, 150), not 350 - 350
    assert _deadline_violations(figures) == [
        "answered 150 ms past a deadline net of harness stalls or gateway CPU waits "
        "(150 ms net of harness stalls, 350 ms raw; limit 100 ms)"
    ]

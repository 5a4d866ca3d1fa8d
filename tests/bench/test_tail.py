"""`bench.tail.table`: the stages of the slowest calls."""

from __future__ import annotations

from bench.stages import Trace
from bench.tail import table


def _timing(request_hop: float) -> bytes:
    stages = {
        "gateway": 0.05,
        "request-hop": request_hop,
        "worker-queue": 0.05,
        "worker": 0.05,
        "reply-hop": 1.0,
    }
    stages |= {"handoff": 0.1, "respond": 0.1}
    stages["total"] = sum(stages.values())
    return ", ".join(f"{name};dur={ms:.3f}" for name, ms in stages.items()).encode()


def test_the_slowest_calls_show_the_stage_they_lost_their_time_in() -> None:
    trace: Trace = [(3.0 + 0.5, _timing(2.0))] * 980 + [(32.0 + 0.5, _timing(30.0))] * 20
    lines = table(trace).splitlines()
    assert lines[0] == "1000 timed calls, 20 at or above the p99 (32.5 ms)"
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in lines[3:]}
    assert rows["request-hop"] == ["2.00", "30.00", "30.00 |"]
    assert rows["reply-hop"] == ["1.00", "1.00", "1.00 |"]
    assert rows["outside"] == ["0.15", "1.15", "1.15 |"]  # end to end less the gateway's total


def test_a_trace_too_short_for_a_p99_says_so() -> None:
    assert table([(3.0, _timing(2.0))] * 99) == "99 timed calls: too few for a p99"

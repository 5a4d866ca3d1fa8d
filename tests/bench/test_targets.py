"""The targets against the floors (ratios within one run) and their report, on made-up results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.step import Step
from bench.targets import FLOOR_LATENCY_FACTORS, FLOOR_RATE_SHARE, evaluate, floor_latency_row, floor_rate_row

CPU = {
    "FH": {"client": 20.0, "httpfloor": 30.0},
    "FK": {"client": 25.0, "kafkafloor": 20.0, "broker": 30.0},
    "B1": {"client": 25.0, "echo": 45.0},
    "B2": {"client": 30.0, "worker": 80.0, "broker": 35.0},
    "S": {"client": 40.0, "gateway": 120.0, "worker": 90.0, "broker": 60.0},
}


def _step(target: str, p50: float | None = None, p99: float | None = None, rate: float | None = 100.0) -> Any:
    latency = (
        {} if p50 is None or p99 is None else {"p50": p50, "p90": p50, "p99": p99, "p99_9": p99, "max": p99}
    )
    name = target.removesuffix("_one")
    cpu = CPU.get(name, {})
    step = Step(
        target=name,
        mode="open" if rate else "closed",
        offered_rate=rate,
        concurrency=1,
        seconds=1.0,
        sent=100,
        ok=100 if latency else 0,
        achieved_rate=rate or 1000.0,
        latency_ms=latency,
        cpu_us_per_request={**cpu, "total": sum(cpu.values())},
        switches_per_request=dict.fromkeys(cpu, 1.0),
    )
    step.pending_after = 0 if target == "S" else None
    return step.to_json()


def _low(s: tuple[float, float], fh: tuple[float, float], fk: tuple[float, float]) -> dict[str, Any]:
    return {
        "FH": _step("FH", *fh),
        "B1": _step("B1", fh[0] * 2, fh[1] * 2),
        "FK": _step("FK", *fk),
        "B2": _step("B2", fk[0] * 2, fk[1] * 2),
        "B2_one": _step("B2_one", fk[0] * 2, fk[1] * 2),
        "S": _step("S", *s),
    }


def _round(number: int, system: float | None, floor: float | None) -> dict[str, Any]:
    return {"round": number, "S": system, "FK": floor, "S_unhealthy_below": [], "FK_unhealthy_below": []}


_PROFILE = {"low_rate": 100.0, "closed_connections": 32, "pipeline_window": 32, "slo_p99_ms": 25.0}
_META = {
    "started": "now",
    "profile": "test",
    "commit": "abc",
    "kafka": "4",
    "librdkafka": "2",
    "load_before": "1",
    "load_after": "1",
    "kafka_properties": "",
    "options": {"loop": "uvloop", "http": "httptools", "env": {}},
}


def _results(s_rate: float | None, floor_rate: float | None) -> dict[str, Any]:
    closed = {target: _step(target, 1.0, 2.0, rate=None) for target in ("FH", "B1", "FK", "B2", "S")}
    return {
        "idle_cores": {},
        # p50 ratios per round 1.5, 1.2 and 4.0; p99 ratios 1.5, 2.5 and 1.0.
        "low": [
            _low((3.0, 6.0), (0.5, 1.0), (1.5, 3.0)),
            _low((6.0, 10.0), (1.0, 1.0), (4.0, 3.0)),
            _low((4.0, 5.0), (0.5, 1.0), (0.5, 4.0)),
        ],
        "closed": [closed],
        "sweep": [{**_step("S", 4.0, 8.0, rate=s_rate or 500.0), "round": 0}],
        "sustained_rate": s_rate,
        "kafka_floor_sweep": [{**_step("FK", 2.0, 4.0, rate=floor_rate or 500.0), "round": 0}],
        "kafka_floor_sustained_rate": floor_rate,
        "sustained_rounds": [_round(0, s_rate, floor_rate)],
        "side_by_side_sweep": [],
        "side_by_side_sustained_rate": None,
        "pending_after": [0],
        "stages": {},
    }


def test_low_load_ratio_is_taken_within_each_round_and_the_median_reported() -> None:
    low = _results(800.0, 1000.0)["low"]
    row = floor_latency_row(low, "p50", 1.5)
    # Per round S / (FH + FK): 3/2, 6/5 and 4/1; their median, not median(S) / median(floors) = 4/2.
    assert row["measured"] == pytest.approx(1.5)
    assert [r["ratio"] for r in row["rounds"]] == pytest.approx([1.5, 1.2, 4.0])
    assert (row["S_ms"], row["floors_ms"]) == (4.0, 2.0)
    assert row["limit"] == 1.5
    assert row["met"] is True  # at the limit is within it
    assert floor_latency_row(low, "p50", 1.4)["met"] is False
    p99 = floor_latency_row(low, "p99", 2.0)
    assert p99["measured"] == pytest.approx(1.5)  # 6/4, 10/4 and 5/5
    assert p99["met"] is True


def test_a_round_without_a_figure_is_left_out() -> None:
    low = _results(800.0, 1000.0)["low"]
    low[2]["FK"] = _step("FK")  # no correct reply: no percentiles
    row = floor_latency_row(low, "p50", 1.5)
    assert len(row["rounds"]) == 2
    assert row["measured"] == pytest.approx((1.5 + 1.2) / 2)
    assert floor_latency_row([], "p50", 1.5)["met"] is None


@pytest.mark.parametrize(
    ("system", "floor", "ratio", "met"),
    [
        (800.0, 1000.0, 0.8, True),
        (750.0, 1000.0, 0.75, True),
        (700.0, 1000.0, 0.7, False),
        (None, 1000.0, 0.0, False),  # S never held the SLO
        (800.0, None, None, None),  # no floor rate: nothing to compare with
    ],
)
def test_sustained_rate_is_a_share_of_the_kafka_floors(
    system: float | None, floor: float | None, ratio: float | None, met: bool | None
) -> None:
    row = floor_rate_row([_round(0, system, floor)], 0.75)
    assert row["measured"] == ratio
    assert row["met"] is met
    assert (row["S"], row["kafka_floor"]) == (system, floor)


def test_sustained_ratio_is_taken_within_each_round_and_the_median_reported() -> None:
    # Ratios per round 0.6, 0.9 and 0.8; the round without a floor rate is left out.
    rounds = [
        _round(0, 600.0, 1000.0),
        _round(1, 900.0, 1000.0),
        _round(2, 400.0, 500.0),
        _round(3, 700.0, None),
    ]
    row = floor_rate_row(rounds, 0.75)
    assert row["measured"] == 0.8
    assert row["met"] is True
    assert [r["ratio"] for r in row["rounds"]] == [0.6, 0.9, 0.8]
    # The sides' own medians are rates some round measured (the lower median of an even count).
    assert (row["S"], row["kafka_floor"]) == (600.0, 1000.0)


def test_the_peak_reading_is_shown_beside_the_target_without_a_verdict(tmp_path: Path) -> None:
    results = _results(800.0, 1000.0)
    # Round 0: the floor healthy again at 4,000/s past its saturation, S not. Round 1: no floor peak.
    results["sustained_rounds"] = [
        {**_round(0, 800.0, 1000.0), "S_peak": 900.0, "FK_peak": 4000.0},
        {**_round(1, 700.0, 1000.0), "S_peak": 700.0, "FK_peak": None},
    ]
    figures, rows = evaluate(results)
    by_key = {row["key"]: row for row in rows if "key" in row}
    peak = by_key["floors_peak"]
    assert peak["measured"] == 0.225  # 900 / 4000; the round without a floor peak left out
    assert peak["met"] is None
    assert (peak["S"], peak["kafka_floor"]) == (700.0, 4000.0)
    assert by_key["floors_sustained"]["measured"] == 0.75  # median of 0.8 and 0.7: the target is unmoved
    document = {
        "meta": _META,
        "profile": _PROFILE,
        "figures": figures,
        "targets": rows,
        "results": results,
    }
    text = report.write(document, tmp_path, "peak")[1].read_text()
    assert "S / Kafka floor, median of the rounds' ratios = 0.225. Rounds: 900.0 / 4000.0 = 0.225." in text


def test_errors_below_the_knee_count_each_round_against_its_own_sustained_rate() -> None:
    results = _results(800.0, 1000.0)
    failing = {**_step("S", 4.0, 8.0, rate=700.0), "errors": 3}
    # Below round 0's knee (800/s): counted. Above round 1's (600/s): past its knee, not counted.
    results["sweep"] = [{**failing, "round": 0}, {**failing, "round": 1}]
    results["sustained_rounds"] = [_round(0, 800.0, 1000.0), _round(1, 600.0, 1000.0)]
    _, rows = evaluate(results)
    (errors,) = [row for row in rows if row["target"] == "errors + timeouts below the knee"]
    assert errors["measured"] == 3


def test_evaluate_judges_against_the_floors_and_keeps_the_baselines_informational() -> None:
    figures, rows = evaluate(_results(700.0, 1000.0))
    by_key = {row["key"]: row for row in rows if "key" in row}
    # Rounds without peaks (documents from before the whole plan was measured): no peak row.
    assert set(by_key) == {"floors_p50", "floors_p99", "floors_sustained"}
    assert by_key["floors_p50"]["limit"] == FLOOR_LATENCY_FACTORS["p50"]
    assert by_key["floors_p99"]["limit"] == FLOOR_LATENCY_FACTORS["p99"]
    assert by_key["floors_sustained"]["limit"] == FLOOR_RATE_SHARE
    assert by_key["floors_sustained"]["met"] is False  # 700 / 1000 < 0.75
    judged = [row for row in rows if row["met"] is not None]
    # Nothing is judged against B1 + B2 or the CPU bound any more; they stay, without a verdict.
    assert not any("B1 + B2" in row["target"] or "CPU bound" in row["target"] for row in judged)
    informational = [row["target"] for row in rows if row["rule"].startswith("informational")]
    assert any(name.startswith("low-load p50 against B1 + B2") for name in informational)
    assert any(name.startswith("sustained rate of S against the CPU bound") for name in informational)
    assert set(figures["low"]) == {"FH", "FK", "B1", "B2", "B2_one", "S"}
    assert figures["cpu_us_per_request"]["FK"]["kafkafloor"] == CPU["FK"]["kafkafloor"]
    assert figures["kafka_floor_sustained_rate"] == 1000.0


def test_report_shows_the_three_rows_the_ratios_and_the_floor_sweep(tmp_path: Path) -> None:
    results = _results(800.0, 1000.0)
    figures, rows = evaluate(results)
    document = {"meta": _META, "profile": _PROFILE, "figures": figures, "targets": rows, "results": results}
    json_path, md_path, png_path = report.write(document, tmp_path, "floors")
    text = md_path.read_text()
    assert "## S against the floors" in text
    low = figures["low"]
    for target, title in (("FH", "| HTTP floor:"), ("FK", "| Kafka floor:"), ("S", "| S: the full system")):
        (line,) = [line for line in text.splitlines() if line.startswith(title)]
        assert line.endswith(f"| {low[target]['p50']} | {low[target]['p99']} |")
    (ratios,) = [line for line in text.splitlines() if line.startswith("| S / (HTTP floor + Kafka floor)")]
    assert "1.5 (<= 1.5: met)" in ratios
    assert "S / Kafka floor, median of the rounds' ratios = 0.8 (>= 0.75: met)" in text
    assert "Rounds (S / Kafka floor): 800.0 / 1000.0 = 0.8." in text
    assert "## Kafka floor open-loop sweep" in text
    assert json_path.exists()
    assert png_path.read_bytes().startswith(b"\x89PNG")

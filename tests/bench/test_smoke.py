"""Smoke run of the whole harness against the real stack: a broker, the worker, the gateway.

Seconds at a low rate; the figures themselves are not judged (CI machines are noisy),
only that every step ran, every reply was checked and counted, and the report is whole.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.bench.smoke import run_module

PERCENTILES = ("p50", "p90", "p99", "p99_9", "max")
# The report rounds a ratio to three decimals: off by up to half a unit, and exactly half plus
# float error when the ratio ends in 5 (0.4375 is reported as 0.438).
ROUNDING = 5e-4 + 1e-9
PATHS = {
    "FH": {"client", "httpfloor"},
    "FK": {"client", "kafkafloor", "broker"},
    "B1": {"client", "echo"},
    "B2": {"client", "worker", "broker"},
    "S": {"client", "gateway", "worker", "broker"},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    run_module("bench", "--smoke", "--out", str(out), timeout=240)
    return out, orjson.loads((out / "results.json").read_bytes())


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    results = document["results"]
    rounds = results["low"] + results["closed"]
    steps: list[dict[str, Any]] = [step for round_ in rounds for step in round_.values()]
    sweep: list[dict[str, Any]] = results["sweep"] + results["kafka_floor_sweep"]
    equal = results.get("equal_rate")
    pair = [step[target] for step in results["side_by_side_sweep"] for target in ("B1", "B2")]
    return steps + sweep + ([equal["B1"], equal["B2"]] if equal else []) + pair


@pytest.mark.integration
def test_every_step_served_and_checked_every_request(report: tuple[Path, dict[str, Any]]) -> None:
    steps = _steps(report[1])
    assert {step["target"] for step in steps} == {"FH", "FK", "B1", "B2", "S"}
    for step in steps:
        assert step["sent"] > 0, step
        assert step["ok"] == step["sent"], step  # a low rate on loopback: every reply correct
        assert step["errors"] == step["timeouts"] == 0, step
        assert step["achieved_rate"] > 0, step


@pytest.mark.integration
def test_latency_percentiles_are_ordered_and_plausible(report: tuple[Path, dict[str, Any]]) -> None:
    document = report[1]
    for step in _steps(document):
        values = [step["latency_ms"][name] for name in PERCENTILES]
        assert values == sorted(values), step
        assert 0 < values[0] < 5_000, step
        assert step["coordinated_omission"] == (step["mode"] in ("closed", "pipelined")), step
    low = document["figures"]["low"]
    # Two Kafka hops can never be cheaper than no Kafka at all.
    assert low["S"]["p50"] > low["B1"]["p50"]
    assert low["S"]["p50"] > low["FH"]["p50"]


@pytest.mark.integration
def test_cpu_is_accounted_per_process_on_each_path(report: tuple[Path, dict[str, Any]]) -> None:
    for step in _steps(report[1]):
        cpu = step["cpu_us_per_request"]
        assert set(cpu) == PATHS[step["target"]] | {"total"}, step
        assert cpu["total"] > 0, step
    assert report[1]["figures"]["cpu_bound"] > 0


@pytest.mark.integration
def test_baselines_are_rerun_at_the_sustained_rate_when_there_is_one(
    report: tuple[Path, dict[str, Any]],
) -> None:
    results, figures = report[1]["results"], report[1]["figures"]
    sustained = results["sustained_rate"]
    assert ("equal_rate" in results) == (sustained is not None)
    assert (figures["equal_rate"] is None) == (sustained is None)
    if sustained is not None:
        assert (
            results["equal_rate"]["B1"]["offered_rate"]
            == results["equal_rate"]["B2"]["offered_rate"]
            == sustained
        )
        assert figures["equal_rate"]["system_total"] > 0
        assert figures["equal_rate"]["baselines_total"] > 0


@pytest.mark.integration
def test_the_baselines_run_side_by_side(report: tuple[Path, dict[str, Any]]) -> None:
    out, document = report
    results, figures = document["results"], document["figures"]
    # One planned rate, no climbing past it, no bisection: exactly one step, healthy or not.
    (step,) = results["side_by_side_sweep"]
    b1, b2 = step["B1"], step["B2"]
    assert b1["offered_rate"] == b2["offered_rate"] == step["rate"]
    assert (b1["target"], b1["mode"], b2["target"], b2["mode"]) == ("B1", "open", "B2", "open")
    # Both sides got correct replies (the checks above cover every count of every step),
    # and the child process was sampled as B2's client.
    assert b1["ok"] > 0
    assert b2["ok"] > 0
    assert "client" in b2["cpu_cores"]
    assert step["p99_sum_ms"] == pytest.approx(b1["latency_ms"]["p99"] + b2["latency_ms"]["p99"])
    assert figures["side_by_side_sustained_rate"] == results["side_by_side_sustained_rate"]
    names = [row["target"] for row in document["targets"]]
    assert any(name.startswith("baselines side by side") for name in names)
    assert "## The baselines side by side" in (out / "results.md").read_text()


@pytest.mark.integration
def test_the_floors_are_measured_and_s_is_judged_against_them(report: tuple[Path, dict[str, Any]]) -> None:
    out, document = report
    results, figures = document["results"], document["figures"]
    for round_ in results["low"]:
        assert (round_["FH"]["mode"], round_["FK"]["mode"]) == ("open", "open")
        assert round_["FH"]["offered_rate"] == round_["FK"]["offered_rate"] == round_["S"]["offered_rate"]
    for round_ in results["closed"]:
        assert (round_["FH"]["mode"], round_["FK"]["mode"]) == ("closed", "pipelined")
    # The floor's sweep starts at its one planned rate, that fraction of its own closed-loop maximum.
    profile = document["profile"]
    fk_max = figures["max_rate"]["FK"]
    first = results["kafka_floor_sweep"][0]
    assert first["offered_rate"] == round(max(10.0, profile["sweep_fractions"][0] * fk_max), -1)
    assert all(step["mode"] == "open" for step in results["kafka_floor_sweep"])
    assert figures["kafka_floor_sustained_rate"] == results["kafka_floor_sustained_rate"]
    rows = {row["key"]: row for row in document["targets"] if "key" in row}
    low = figures["low"]
    for name in ("p50", "p99"):
        row = rows[f"floors_{name}"]
        assert row["measured"] == pytest.approx(
            low["S"][name] / (low["FH"][name] + low["FK"][name]), rel=1e-3, abs=ROUNDING
        )
        assert row["met"] in (True, False)
    sustained = rows["floors_sustained"]
    assert (sustained["S"], sustained["kafka_floor"]) == (
        results["sustained_rate"],
        results["kafka_floor_sustained_rate"],
    )
    # Every round swept both sides, and the target is the median of the rounds' own ratios.
    rounds = results["sustained_rounds"]
    assert [r["round"] for r in rounds] == list(range(profile["sweep_rounds"]))
    for sweep in (results["sweep"], results["kafka_floor_sweep"]):
        assert {step["round"] for step in sweep} == set(range(profile["sweep_rounds"]))
    # Each side's peak is one of its round's steps, never below the round's sustained rate.
    for r in rounds:
        for side, steps in (("S", results["sweep"]), ("FK", results["kafka_floor_sweep"])):
            peak = r[f"{side}_peak"]
            assert peak is None or peak in {s["offered_rate"] for s in steps if s["round"] == r["round"]}
            assert r[side] is None or (peak is not None and peak >= r[side])
    # A noisy CI machine may keep the floor's p99 over the SLO in every round: then no verdict.
    ratios = [(r["S"] or 0.0) / r["FK"] for r in rounds if r["FK"]]
    expected = statistics.median(ratios) if ratios else None
    assert sustained["measured"] == pytest.approx(expected, abs=ROUNDING)
    text = (out / "results.md").read_text()
    assert "## S against the floors" in text
    assert "## Kafka floor open-loop sweep" in text


@pytest.mark.integration
def test_pending_map_is_empty_after_every_gateway_run(report: tuple[Path, dict[str, Any]]) -> None:
    pending = report[1]["results"]["pending_after"]
    assert pending, "no gateway step recorded its pending gauge"
    assert set(pending) == {0}


@pytest.mark.integration
def test_report_has_targets_stages_table_and_plot(report: tuple[Path, dict[str, Any]]) -> None:
    out, document = report
    names = [row["target"] for row in document["targets"]]
    assert any(name.startswith("low-load p50") for name in names)
    assert any(name.startswith("sustained rate") for name in names)
    stages = document["results"]["stages"]
    assert stages["requests"] > 0
    # Every stage from HTTP in to HTTP out, each a non-negative duration on one host's clock.
    parts = ("gateway", "request-hop", "worker-queue", "worker", "reply-hop", "handoff", "respond")
    for segment in (*parts, "total"):
        assert stages[segment]["p50"] >= 0.0, stages
    # The gateway's stages add up to its total (medians of parts need not, means must).
    assert sum(stages[name]["mean"] for name in parts) == pytest.approx(stages["total"]["mean"], abs=0.01)
    assert stages["outside"]["p50"] > 0.0
    table = (out / "results.md").read_text()
    assert "| target | rule | measured | limit | ratio | met |" in table
    assert (out / "results.png").read_bytes().startswith(b"\x89PNG")

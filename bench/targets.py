"""The issue's targets, evaluated as ratios of same-run floors (medians over rounds).

low-load p50   S / (HTTP floor + Kafka floor) <= 1.5 (per round; the median of the rounds)
low-load p99   S / (HTTP floor + Kafka floor) <= 2
sustained rate S's highest healthy open-loop rate (p99 <= SLO, no errors, rate achieved)
               >= 0.75 x the Kafka floor's, both found by the same sweep in the same round
               (per round; the median of the rounds)
gateway CPU    <= 1.5 x (B1 server + B2 client) CPU-µs per request (PERFORMANCE.md 8.7)
zero errors below the knee; pending map back to 0 after every run; RSS growth < 5 %

Informational rows (no limit to meet): S against B1 + B2 at low load and S's sustained
rate against the CPU bound (the targets before the floors), the sustained rate of the
baselines side by side (B1 ∥ B2: S's work without the gateway joining it) against the
CPU bound, and S's against it.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

RSS_GROWTH_LIMIT = 0.05
CORES = os.cpu_count() or 1
FLOORS = ("FH", "FK")
"""The HTTP floor (`bench.httpfloor`) and the Kafka floor (`bench.kafkafloor`)."""
FLOOR_LATENCY_FACTORS = {"p50": 1.5, "p99": 2.0}
"""Low load: S's percentile over the floors' summed, at most this."""
FLOOR_RATE_SHARE = 0.75
"""Sustained: S's highest healthy rate over the Kafka floor's, at least this."""
LOW_TARGETS = ("FH", "FK", "B1", "B2", "B2_one", "S")
CLOSED_TARGETS = ("FH", "FK", "B1", "B2", "S")


def cpu_bound(closed: list[dict[str, Any]]) -> float | None:
    """CORES x 10^6 / (B1 + B2 CPU-µs per request), medians of the closed-loop rounds."""
    summed = sum(_median_by_process(closed, t, "cpu_us_per_request").get("total", 0) for t in ("B1", "B2"))
    return round(CORES * 1e6 / summed, 1) if summed else None


def evaluate(results: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(derived figures, one row per target) from `Suite.results`."""
    low, closed = results["low"], results["closed"]
    low_targets, closed_targets = _present(low, LOW_TARGETS), _present(closed, CLOSED_TARGETS)
    figures: dict[str, Any] = {
        "cores": CORES,
        "low": {t: _median_latency(low, t) for t in low_targets},
        "max_rate": {t: _median(closed, t, lambda s: s["achieved_rate"]) for t in closed_targets},
        "cpu_us_per_request": {
            t: _median_by_process(closed, t, "cpu_us_per_request") for t in closed_targets
        },
        "switches_per_request": {
            t: _median_by_process(closed, t, "switches_per_request") for t in closed_targets
        },
        "low_cpu_us_per_request": {
            t: _median_by_process(low, t, "cpu_us_per_request") for t in low_targets if t != "B2_one"
        },
        "idle_cores": results.get("idle_cores", {}),
    }
    b1_cpu, b2_cpu = figures["cpu_us_per_request"]["B1"], figures["cpu_us_per_request"]["B2"]
    figures["cpu_bound"] = cpu_bound(closed)
    figures["sustained_rate"] = results.get("sustained_rate")
    figures["kafka_floor_sustained_rate"] = results.get("kafka_floor_sustained_rate")
    figures["side_by_side_sustained_rate"] = results.get("side_by_side_sustained_rate")
    figures["equal_rate"] = _equal_rate(results)
    bound, sustained = figures["cpu_bound"], figures["sustained_rate"]
    rounds = results.get("sustained_rounds", [])
    # Documents from before the sweeps measured their whole plan have no peaks.
    peak = (
        [floor_rate_row(rounds, FLOOR_RATE_SHARE, peak=True)] if any("FK_peak" in r for r in rounds) else []
    )
    rows = [
        *(floor_latency_row(low, name, factor) for name, factor in FLOOR_LATENCY_FACTORS.items()),
        floor_rate_row(rounds, FLOOR_RATE_SHARE),
        *peak,
        _latency_row(low, "p50", lambda base: 1.3 * base + 0.3, "1.3 x (B1 + B2) + 0.3 ms"),
        _latency_row(low, "p99", lambda base: 2 * base, "2 x (B1 + B2)"),
        _row(
            "sustained rate of S against the CPU bound, req/s",
            f"informational: ratio to the CPU bound ({bound})",
            sustained,
            bound,
            informational=True,
        ),
    ]
    pair = figures["side_by_side_sustained_rate"]
    rows += [
        _row(
            "baselines side by side (B1 ∥ B2) sustained rate, req/s",
            f"informational: ratio to the CPU bound ({bound})",
            pair,
            bound,
            informational=True,
        ),
        _row(
            "sustained rate of S against the baselines side by side, req/s",
            f"informational: ratio to B1 ∥ B2 ({pair})",
            sustained,
            pair,
            informational=True,
        ),
    ]
    gateway = figures["cpu_us_per_request"]["S"].get("gateway")
    server = b1_cpu.get("echo", 0) + b2_cpu.get("client", 0)
    rows.append(_row("gateway CPU-µs per request", "<= 1.5 x (B1 server + B2 client)", gateway, 1.5 * server))
    knees = {r["round"]: r["S"] for r in results.get("sustained_rounds", []) if r["S"]}
    below_knee = [
        s for s in results["sweep"] if s["round"] in knees and s["offered_rate"] <= knees[s["round"]]
    ]
    errors = sum(s["errors"] + s["timeouts"] for s in below_knee + [r["S"] for r in low])
    rows.append(_row("errors + timeouts below the knee", "0", errors, 0))
    pending = max(results["pending_after"], default=None)
    rows.append(_row("pending map after every run (max)", "0", pending, 0))
    if "soak" in results:
        growth = results["soak"]["rss_growth"].get("gateway")
        rows.append(
            _row(
                f"gateway RSS growth over {results['soak']['requests']} requests",
                "< 5 %",
                growth,
                RSS_GROWTH_LIMIT,
            )
        )
    return figures, rows


SERVERS = {"B1": ("echo",), "B2": ("worker", "broker"), "S": ("gateway", "worker", "broker")}
"""The processes that serve requests; the clients are the harness."""
KEPT_UP = 0.98
"""Share of the offered rate a baseline must achieve for its equal-rate CPU to count."""


def _equal_rate(results: dict[str, Any]) -> dict[str, Any] | None:
    """Server-side CPU-µs per request of S and of B1 + B2, all open loop at S's sustained rate."""
    equal = results.get("equal_rate")
    sustained = results.get("sustained_rate")
    # The step of the round that found the median rate: other rounds may have run that rate too.
    knee_round = next((r["round"] for r in results.get("sustained_rounds", []) if r["S"] == sustained), None)
    s_step = next(
        (s for s in results["sweep"] if s["round"] == knee_round and s["offered_rate"] == sustained), None
    )
    if equal is None or s_step is None:
        return None
    servers = {
        name: {process: step["cpu_us_per_request"].get(process, 0.0) for process in SERVERS[name]}
        for name, step in (("B1", equal["B1"]), ("B2", equal["B2"]), ("S", s_step))
    }
    baselines = sum(servers["B1"].values()) + sum(servers["B2"].values())
    system = sum(servers["S"].values())
    # CPU per request of a baseline that fell behind or failed would compare unlike work.
    kept_up = all(
        step["errors"] + step["timeouts"] == 0 and step["achieved_rate"] >= KEPT_UP * step["offered_rate"]
        for step in (equal["B1"], equal["B2"])
    )
    return {
        "rate": sustained,
        "servers": servers,
        "baselines_kept_up": kept_up,
        "baselines_total": round(baselines, 1),
        "system_total": round(system, 1),
        "ratio": round(system / baselines, 3) if baselines and kept_up else None,
    }


def floor_latency_row(low: list[dict[str, Any]], name: str, factor: float) -> dict[str, Any]:
    """Low load: S's percentile ``name`` over the floors' summed, per round; the median of the rounds.

    Each round measured the floors and S minutes apart at most, under the same background,
    so the ratio is taken within a round. A round where S or a floor has no figure (no
    correct reply) is left out. The row also carries the medians in milliseconds.
    """
    pairs = []
    for round_ in low:
        s, fh, fk = (round_[t]["latency_ms"].get(name) if t in round_ else None for t in ("S", *FLOORS))
        if s is not None and fh is not None and fk is not None and fh + fk > 0:
            pairs.append((s, fh + fk))
    ratio = statistics.median(s / floors for s, floors in pairs) if pairs else None
    row = _row(f"low-load {name}: S / (HTTP floor + Kafka floor)", f"<= {factor:g}", ratio, factor)
    row["key"] = f"floors_{name}"
    row["S_ms"] = round(statistics.median(s for s, _ in pairs), 3) if pairs else None
    row["floors_ms"] = round(statistics.median(floors for _, floors in pairs), 3) if pairs else None
    row["rounds"] = [
        {"S": s, "floors": round(floors, 3), "ratio": round(s / floors, 3)} for s, floors in pairs
    ]
    return row


def floor_rate_row(rounds: list[dict[str, Any]], share: float, *, peak: bool = False) -> dict[str, Any]:
    """Sustained: S's highest healthy open-loop rate over the Kafka floor's, per round; the median.

    A round without a floor rate (the floor never held the SLO: nothing to compare with)
    is left out; S without one where the floor has one counts as 0, which fails. The row
    also carries the two sides' medians and every round's figures. With ``peak`` the same
    for each side's highest healthy step anywhere, above a saturated one too: the target
    read literally, shown beside it without a verdict.
    """
    s_key, fk_key = ("S_peak", "FK_peak") if peak else ("S", "FK")
    pairs = [((r.get(s_key) or 0.0), r[fk_key]) for r in rounds if r.get(fk_key)]
    ratio = statistics.median(s / fk for s, fk in pairs) if pairs else None
    if peak:
        name = "peak rate (highest healthy step, past saturation too): S / Kafka floor"
        row = _row(name, f"informational: against {share:g}", ratio, share, informational=True)
    else:
        name = "sustained rate (p99 <= 25 ms): S / Kafka floor"
        row = _row(name, f">= {share:g}", ratio, share, higher_is_better=True)
    row["key"] = "floors_peak" if peak else "floors_sustained"
    row["S"], row["kafka_floor"] = median_rate(rounds, s_key), median_rate(rounds, fk_key)
    row["rounds"] = [{"S": s, "kafka_floor": fk, "ratio": round(s / fk, 3)} for s, fk in pairs]
    return row


def median_rate(rounds: list[dict[str, Any]], side: str) -> float | None:
    """The median of ``side``'s sustained rates over the rounds that found one.

    The lower median, so that it is a rate a round measured and its step can be looked up.
    """
    rates = [r[side] for r in rounds if r.get(side) is not None]
    return statistics.median_low(rates) if rates else None


def _present(rounds: list[dict[str, Any]], targets: tuple[str, ...]) -> list[str]:
    """The targets measured in these rounds (each round measures the same ones)."""
    return [t for t in targets if rounds and t in rounds[0]]


def _median(rounds: list[dict[str, Any]], target: str, pick: Any) -> float | None:
    values = [pick(r[target]) for r in rounds if r[target]["ok"]]
    return round(statistics.median(values), 3) if values else None


def _median_latency(rounds: list[dict[str, Any]], target: str) -> dict[str, float]:
    names = rounds[0][target]["latency_ms"].keys() if rounds and rounds[0][target]["latency_ms"] else []
    return {name: _median(rounds, target, lambda s, n=name: s["latency_ms"][n]) or 0.0 for name in names}


def _median_by_process(rounds: list[dict[str, Any]], target: str, key: str) -> dict[str, float]:
    names = {name for r in rounds for name in r[target].get(key, {})}
    return {
        name: round(statistics.median(r[target][key].get(name, 0.0) for r in rounds), 2)
        for name in sorted(names)
    }


def _latency_row(low: list[dict[str, Any]], name: str, limit_of: Any, text: str) -> dict[str, Any]:
    """Informational, per round: S against ``limit_of`` that round's B1 + B2; medians reported."""
    measured, limits = [], []
    for round_ in low:
        s, b1, b2 = (round_[t]["latency_ms"].get(name) for t in ("S", "B1", "B2"))
        if s is None or b1 is None or b2 is None:
            continue
        measured.append(s)
        limits.append(limit_of(b1 + b2))
    value = statistics.median(measured) if measured else None
    limit = statistics.median(limits) if limits else None
    row = _row(
        f"low-load {name} against B1 + B2 (ms)", f"informational: {text}", value, limit, informational=True
    )
    row["rounds"] = [{"S": m, "limit": round(x, 3)} for m, x in zip(measured, limits, strict=True)]
    return row


def _row(
    name: str,
    target: str,
    measured: float | None,
    limit: float | None,
    *,
    higher_is_better: bool = False,
    informational: bool = False,
) -> dict[str, Any]:
    """One row; an ``informational`` one has a reference in place of a limit and no verdict."""
    met: bool | None = None
    ratio: float | None = None
    if measured is not None and limit is not None:
        ratio = round(measured / limit, 3) if limit else None
        if not informational:
            met = measured >= limit if higher_is_better else measured <= limit
    return {
        "target": name,
        "rule": target,
        "measured": None if measured is None else round(measured, 3),
        "limit": None if limit is None else round(limit, 3),
        "ratio": ratio,
        "met": met,
    }

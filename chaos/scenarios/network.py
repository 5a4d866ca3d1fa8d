"""Network faults through toxiproxy: gateways' or workers' links to the brokers stalled, reset, degraded."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from typing import Literal

from chaos.load import Load, Outcome
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack
from chaos.toxiproxy import ProxiedKafkaCluster

# (toxic type, attributes, start at completions, end at completions, label on the plot)
FAULTS: list[tuple[str, dict[str, int], int, int, str]] = [
    ("latency", {"latency": 100, "jitter": 20}, 300, 900, "latency 100 +- 20 ms"),
    ("timeout", {"timeout": 0}, 1200, 1500, "stall (timeout 0)"),
    ("reset_peer", {"timeout": 0}, 1900, 2100, "reset_peer"),
]

DEGRADED = "latency 100 ms + 3000 kbit/s"
DEGRADATION: list[tuple[str, dict[str, int]]] = [
    ("latency", {"latency": 100, "jitter": 25}),
    # toxiproxy's bandwidth rate is in KB/s: 3,000 kbit/s = 375 KB/s.
    ("bandwidth", {"rate": 375}),
]
RATE, WAIT = 50, 3
"""Calls per second and their ``Prefer: wait`` deadline (s) in the degraded scenarios."""
BASELINE_S, FAULT_S, TAIL_S = 15, 60, 30
"""Clean load before the toxics, their duration, and the load after they are removed."""
WARM_UP_S = 5
"""The first seconds of the baseline (fresh connections, first metadata) are not part of it."""
RECOVERED_FOR = 5
"""Consecutive seconds within the threshold that count as recovered (`recovery_time`)."""
RECOVERY_FLOOR = 0.050
"""The recovery threshold is 2 x the baseline p99 but at least this much above it: a 10 ms
p99 doubles on noise alone."""


@contextlib.asynccontextmanager
async def toxics_cleared(kafka: ProxiedKafkaCluster) -> AsyncIterator[None]:
    """Remove every toxic on the way out: the next scenario shares the proxies, even after a failure."""
    try:
        yield
    finally:
        await asyncio.to_thread(kafka.toxiproxy.reset)


async def proxy_faults(kafka: Kafka, figures: Figures) -> None:
    """The gateways reach the brokers only through toxiproxy; workers connect directly."""
    assert isinstance(kafka, ProxiedKafkaCluster)
    stack = Stack(kafka, "network", gateway_bootstrap=kafka.proxied_bootstrap)
    async with closing(stack, figures), toxics_cleared(kafka):
        stack.add_production()
        await asyncio.to_thread(stack.wait_ready)
        load = Load(stack.urls, total=2700, rate=60, concurrency=32, wait=3)
        windows: dict[str, tuple[int, int]] = {}
        readiness: dict[str, float | None] = {}

        async def fault() -> None:
            for kind, attributes, start, end, label in FAULTS:
                await load.reached(start)
                first, began = len(load.outcomes), time.perf_counter()
                await asyncio.to_thread(kafka.add_toxic, kind, kind, attributes)
                await load.reached(end)
                await asyncio.to_thread(kafka.remove_toxic, kind)
                figures.mark(label, began)
                windows[kind] = (first, len(load.outcomes))
                # The slower of the gateways: the fault is over once both are ready again.
                waited = await asyncio.gather(
                    *(asyncio.to_thread(g.wait_readiness, True, 60) for g in stack.gateways)
                )
                readiness[f"readyz true on both gateways after {kind} removed (s)"] = (
                    None if None in waited else round(max(w for w in waited if w is not None), 2)
                )

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        for kind, (first, last) in windows.items():
            during = collections.Counter(o.status for o in load.outcomes[first:last])
            figures.notes[f"statuses during {kind}"] = dict(during)
        figures.notes.update(readiness)
        tail = load.outcomes[-300:]
        figures.notes["statuses of the last 300 calls"] = dict(collections.Counter(o.status for o in tail))
        figures.require(all(o.status == 200 for o in tail), "the gateways did not recover after the faults")
        figures.require(set(figures.statuses) <= {200, 503, 504}, f"statuses {sorted(figures.statuses)}")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(all(v is not None for v in readiness.values()), "readiness did not come back")


async def degraded_gateways(kafka: Kafka, figures: Figures) -> None:
    """`degraded`, between the gateways and the brokers."""
    await degraded(kafka, figures, "gateways")


async def degraded_workers(kafka: Kafka, figures: Figures) -> None:
    """`degraded`, between the workers and the brokers."""
    await degraded(kafka, figures, "workers")


async def degraded(kafka: Kafka, figures: Figures, side: Literal["gateways", "workers"]) -> None:
    """2 gateways and 2 workers, 3 brokers; one ``side`` reaches them through toxiproxy, the other directly.

    After a 15 s clean baseline, every proxy gets 100 +- 25 ms latency and a 3,000 kbit/s cap on
    both streams for 60 s, then 30 s of load more. Only timeouts (504) may fail calls, and no
    acknowledged request may be lost. Recovery time: see `recovery_time`.
    """
    assert isinstance(kafka, ProxiedKafkaCluster)
    proxied = kafka.proxied_bootstrap
    stack = Stack(
        kafka,
        f"degraded-{side}",
        gateway_bootstrap=proxied if side == "gateways" else None,
        worker_bootstrap=proxied if side == "workers" else None,
    )
    async with closing(stack, figures), toxics_cleared(kafka):
        stack.add_production()
        await asyncio.to_thread(stack.wait_ready)
        # More calls than the run needs: `finish` ends the load after the recovery tail.
        load = Load(
            stack.urls, total=RATE * (BASELINE_S + FAULT_S + 2 * TAIL_S), rate=RATE, concurrency=32, wait=WAIT
        )
        window: list[float] = []

        async def fault() -> None:
            await load.reached(RATE * BASELINE_S)
            start = time.perf_counter()
            for kind, attributes in DEGRADATION:
                await asyncio.to_thread(kafka.add_toxic, kind, kind, attributes)
            await asyncio.sleep(FAULT_S)  # the fault's duration, not synchronisation
            for kind, _ in DEGRADATION:
                await asyncio.to_thread(kafka.remove_toxic, kind)
            figures.mark(DEGRADED, start)
            window.extend((start, time.perf_counter()))
            await load.reached(len(load.outcomes) + RATE * TAIL_S)
            load.finish()

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        start, end = window
        _degraded_figures(figures, load.outcomes, start, end)


def _degraded_figures(figures: Figures, outcomes: Sequence[Outcome], start: float, end: float) -> None:
    """Latency per phase (calls by send time), statuses under the fault, recovery, and the checks."""
    before = [o for o in outcomes if start - (BASELINE_S - WARM_UP_S) <= o.sent_at < start]
    during = [o for o in outcomes if start <= o.sent_at < end]
    after = [o for o in outcomes if o.sent_at >= end]
    phases = {"before": before, "during the fault": during, "after": after}
    ok = {phase: sorted(o.elapsed for o in calls if o.status == 200) for phase, calls in phases.items()}
    for phase, elapsed in ok.items():
        p50, p99 = _quantile(elapsed, 50) * 1000, _quantile(elapsed, 99) * 1000
        figures.notes[f"2xx p50 / p99 {phase} (ms)"] = f"{p50:.0f} / {p99:.0f} ({len(elapsed)} calls)"
    figures.notes["statuses during the fault"] = dict(collections.Counter(o.status for o in during))
    baseline = _quantile(ok["before"], 99)
    threshold = max(2 * baseline, baseline + RECOVERY_FLOOR)
    p99s = per_second_p99(outcomes, end)
    recovered = recovery_time(p99s, threshold)
    figures.notes[f"recovery time (s; {RECOVERED_FOR} s in a row with p99 <= threshold)"] = (
        f"{recovered} (threshold {threshold * 1000:.0f} ms: 2 x baseline p99, at least + 50 ms)"
    )
    figures.notes["per-second p99 after removal (ms)"] = " ".join(f"{p * 1000:.0f}" for p in p99s.values())
    figures.require(
        _quantile(ok["during the fault"], 50) >= _quantile(ok["before"], 50) + 0.100,
        "the toxics did not slow the calls: the traffic does not go through the proxies",
    )
    figures.require(recovered is not None, f"per-second p99 not back within {threshold * 1000:.0f} ms")
    figures.require(
        set(figures.statuses) <= {200, 504}, f"statuses {sorted(figures.statuses)}: not only timeouts"
    )
    figures.require(figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost")
    figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")


def per_second_p99(outcomes: Sequence[Outcome], since: float) -> dict[int, float]:
    """p99 response time of the calls sent in each whole second after ``since``, whatever their
    status (a 504 counts with its full wait); seconds in which no call was sent are absent."""
    bins: dict[int, list[float]] = collections.defaultdict(list)
    for outcome in outcomes:
        if outcome.sent_at >= since:
            bins[int(outcome.sent_at - since)].append(outcome.elapsed)
    return {second: _quantile(elapsed, 99) for second, elapsed in sorted(bins.items())}


def recovery_time(p99s: dict[int, float], threshold: float) -> int | None:
    """Seconds from removing the toxics until the latency is back, to 1 s resolution.

    ``p99s`` is `per_second_p99` since the removal. The answer is the start of the first
    `RECOVERED_FOR` consecutive seconds whose p99 is within ``threshold`` (one second's p99 of
    ~50 calls is nearly its maximum, so a single scheduling hiccup on a shared machine must not
    count as "not recovered"); None if there is no such run.
    """
    for second in sorted(p99s):
        run = range(second, second + RECOVERED_FOR)
        if all(s in p99s and p99s[s] <= threshold for s in run):
            return second
    return None


def _quantile(values: Sequence[float], percent: int) -> float:
    """The ``percent``-th percentile; 0 for no values (statistics.quantiles needs two)."""
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100)[percent - 1]


SCENARIOS = [
    Scenario(
        "network-toxiproxy",
        "proxied",
        False,
        "gateways<->3 brokers via toxiproxy: 100+-20 ms latency, then a stall (timeout), then reset_peer",
        proxy_faults,
    ),
    Scenario(
        "network-degraded-gateway",
        "proxied",
        False,
        "gateways<->3 brokers via toxiproxy: 100+-25 ms latency + 3000 kbit/s, both ways, 60 s",
        degraded_gateways,
    ),
    Scenario(
        "network-degraded-workers",
        "proxied",
        False,
        "workers<->3 brokers via toxiproxy: 100+-25 ms latency + 3000 kbit/s, both ways, 60 s",
        degraded_workers,
    ),
]

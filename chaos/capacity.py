"""The sustained rate of a chaos stack: the benchmark's search and criteria, on the stack's own topology.

`make bench` measures one broker, one gateway and one worker. The soak runs three brokers
(replicating every record), two gateways and three workers on the same two cores, so the
benchmark's rate is not the rate that topology sustains; this measures that one, with the
harness that will drive it. A step is healthy as in the benchmark (`bench.step.Step.healthy`):
every call 200, p99 within the SLO, the rate achieved.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from bench.latency import Latencies
from bench.profile import PROFILES
from bench.step import Step
from bench.suite import sweep
from chaos.load import Load, Outcome

log = logging.getLogger("chaos")

SLO_P99_MS = PROFILES["full"].slo_p99_ms
"""The benchmark's bound on p99 for a sustained rate."""
FRACTIONS = (0.15, 0.25, 0.35, 0.5, 0.65, 0.8, 1.0)
"""Shares of the reference rate probed, in order, never above it. From low: the soak's topology
held 320/s where the benchmark's held 1,080/s (its p50 was 12 ms at 540/s, 53 ms at 1,080/s)."""
STEP_SECONDS = 15.0
WARM_UP = (0.25, 60.0)
"""Share of the reference and seconds of calls before the first step, not judged: brokers started
with the scenario answered even 252 calls/s in 1-2 s for their first 20 s."""
BISECT_STEPS = 1
CONCURRENCY = 64
"""Virtual users per step: at 1,000 calls/s and a 25 ms p99, about 25 calls are in flight."""
WAIT = 2


def sustained_rate(targets: Sequence[str], reference: float) -> tuple[float | None, list[Step]]:
    """The highest healthy rate among fractions of ``reference`` (calls/s), and every step measured.

    Blocking: each step runs its own event loop, as `sweep` calls its measure synchronously.
    """
    steps: list[Step] = []

    def run(rate: float, seconds: float) -> list[Outcome]:
        load = Load(targets, total=round(rate * seconds), rate=rate, concurrency=CONCURRENCY, wait=WAIT)
        return asyncio.run(load.run())

    def measure(rate: float) -> list[Step]:
        steps.append(step_of(run(rate, STEP_SECONDS), rate))
        log.info("sustained rate: %s: %s", steps[-1].label(), steps[-1].brief())
        return steps[-1:]

    share, seconds = WARM_UP
    run(share * reference, seconds)

    rates = [round(fraction * reference, -1) for fraction in FRACTIONS]
    sustained, _ = sweep(rates, measure, SLO_P99_MS, BISECT_STEPS)
    return sustained, steps


def step_of(outcomes: Sequence[Outcome], rate: float) -> Step:
    """One open-loop step as the benchmark records it, from a `Load`'s outcomes at ``rate``."""
    latencies = Latencies()
    ok = timeouts = 0
    for outcome in outcomes:
        if 200 <= outcome.status < 300:
            ok += 1
            latencies.add(round(outcome.elapsed * 1e9))
        elif outcome.status == 504:
            timeouts += 1
    sent = sorted(o.sent_at for o in outcomes)
    window = sent[-1] - sent[0] if len(sent) >= 2 else 0.0
    return Step(
        target="S on the chaos stack",
        mode="open",
        offered_rate=rate,
        concurrency=CONCURRENCY,
        seconds=window,
        sent=len(outcomes),
        ok=ok,
        errors=len(outcomes) - ok - timeouts,
        timeouts=timeouts,
        achieved_rate=(len(sent) - 1) / window if window else 0.0,
        latency_ms=latencies.summary(),
    )

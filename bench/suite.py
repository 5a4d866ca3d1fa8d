"""`Suite`: the ordered steps of one benchmark run, baselines and system side by side.

Order (PERFORMANCE.md 8): low-load rounds of B1, B2 and S interleaved; closed-loop
rounds for maximum rate and CPU per request; an open-loop sweep of S relative to its
closed-loop maximum, bisected at the SLO knee; a stage breakdown; an optional soak.
Each step records CPU per request of the processes on its path only.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from .cpu import CpuMeter, rss_bytes
from .loadgen import LoadGenerator, connections_for, new_loop
from .pingpong import PingPong
from .profile import Profile
from .stack import Stack
from .stages import Trace, breakdown
from .step import Step

# Processes on each target's path (the bench process is the HTTP load generator or Kafka client).
PATHS = {
    "B1": ("client", "echo"),
    "B2": ("client", "worker", "broker"),
    "S": ("client", "gateway", "worker", "broker"),
}
SOAK_RATE_SHARE = 0.5
"""By default the soak runs at this share of the sustained rate ..."""
MIN_SOAK_RATE = 300.0
"""... but never slower than this, so 1,000,000 requests take at most an hour."""
EXTRA_STEPS = 4
"""Sweep steps added above the planned ones while the system is still healthy."""
MIN_BISECT_GAP = 20.0
SATURATED_RATE_SHARE = 0.9
"""Below this share of the offered rate achieved, the sweep has passed the knee."""


class Suite:
    """Runs the steps against a started `Stack`; results accumulate in `results`."""

    def __init__(self, stack: Stack, profile: Profile, log: Callable[[str], None]) -> None:
        self.stack = stack
        self.profile = profile
        self.log = log
        self.meter = CpuMeter({**stack.pids, "client": os.getpid()})
        self.echo = LoadGenerator("127.0.0.1", stack.echo_port)
        self.gateway = LoadGenerator("127.0.0.1", stack.gateway_port)
        self.pingpong = PingPong(stack.kafka_settings, stack.request_topic, stack.pingpong_topic)
        self.runner = asyncio.Runner(loop_factory=new_loop)
        self.results: dict[str, Any] = {"low": [], "closed": [], "sweep": [], "pending_after": []}

    def close(self) -> None:
        """Release the Kafka clients and the event loop."""
        self.pingpong.close()
        self.runner.close()

    def run(self, soak: int | None, soak_rate: float | None = None) -> dict[str, Any]:
        """Every step; returns the raw results (steps as JSON dicts)."""
        p = self.profile
        self.results["idle_cores"] = self._warm_up()
        for round_number in range(p.repeats):
            self.log(f"low-load round {round_number + 1}/{p.repeats}")
            self.results["low"].append(self._low_round())
        for round_number in range(p.repeats):
            self.log(f"closed-loop round {round_number + 1}/{p.repeats}")
            self.results["closed"].append(self._closed_round())
        s_max = statistics.median(r["S"]["achieved_rate"] for r in self.results["closed"])
        self._sweep(s_max)
        if self.results["sustained_rate"]:
            self.results["equal_rate"] = self._equal_rate(self.results["sustained_rate"])
        self.results["stages"] = self._stages()
        if soak:
            self.results["soak"] = self._soak(soak, soak_rate)
        return self.results

    def _warm_up(self) -> dict[str, float]:
        """Load every path once (JIT, connections, caches), then measure idle CPU per process.

        A broker that has just started compiles and compacts for a while; its idle CPU is
        reported so a reader can tell background load from per-request cost.
        """
        p = self.profile
        self.log("warm-up")
        self.runner.run(self.echo.closed_loop(p.closed_connections, p.closed_seconds, 0))
        self.pingpong.pipelined(p.pipeline_window, p.closed_seconds, 0)
        self.runner.run(self.gateway.closed_loop(p.closed_connections, p.closed_seconds, 0))
        before, started = self.meter.sample(), time.perf_counter()
        time.sleep(p.idle_seconds)  # measuring idle CPU over a window, not waiting for an event
        idle = CpuMeter.utilisation(before, self.meter.sample(), time.perf_counter() - started)
        self.log(f"idle CPU (cores): {idle}")
        return idle

    def _low_round(self) -> dict[str, Any]:
        p = self.profile
        conns = connections_for(p.low_rate)
        b1 = self._http("B1", self.echo, self.echo.open_loop(p.low_rate, p.low_seconds, p.warmup, conns))
        b2 = self._measure("B2", lambda: self.pingpong.open_loop(p.low_rate, p.low_seconds, p.warmup))
        b2_one = self._measure("B2", lambda: self.pingpong.paced(p.low_rate, p.low_seconds, p.warmup))
        s = self._http("S", self.gateway, self.gateway.open_loop(p.low_rate, p.low_seconds, p.warmup, conns))
        return {"B1": b1.to_json(), "B2": b2.to_json(), "B2_one": b2_one.to_json(), "S": s.to_json()}

    def _closed_round(self) -> dict[str, Any]:
        p = self.profile
        n = p.closed_connections
        b1 = self._http("B1", self.echo, self.echo.closed_loop(n, p.closed_seconds, p.warmup))
        b2 = self._measure(
            "B2", lambda: self.pingpong.pipelined(p.pipeline_window, p.closed_seconds, p.warmup)
        )
        s = self._http("S", self.gateway, self.gateway.closed_loop(n, p.closed_seconds, p.warmup))
        return {"B1": b1.to_json(), "B2": b2.to_json(), "S": s.to_json()}

    def _sweep(self, s_max: float) -> None:
        """Open-loop steps up to past the knee, then bisect below the first unhealthy rate.

        A noisy neighbour can push one step's p99 over the SLO, so an unhealthy step does
        not end the sweep; only saturation does (rate not achieved, errors, or p99 far
        past the SLO). The sustained rate is the highest healthy rate; unhealthy rates
        below it are reported, not hidden.
        """
        p = self.profile
        healthy: list[float] = []
        unhealthy: list[float] = []
        rates = [round(max(10.0, fraction * s_max), -1) for fraction in p.sweep_fractions]
        extra = EXTRA_STEPS
        while rates:
            rate = rates.pop(0)
            step = self._sweep_step(rate)
            (healthy if step.healthy(p.slo_p99_ms) else unhealthy).append(rate)
            if _saturated(step, p.slo_p99_ms):
                break
            if not rates and extra and step.healthy(p.slo_p99_ms):
                # The closed loop underestimated the knee: keep climbing, boundedly.
                rates.append(round(rate * 1.25, -1))
                extra -= 1
        for _ in range(p.bisect_steps):
            best = max(healthy, default=None)
            above = min((rate for rate in unhealthy if best is None or rate > best), default=None)
            if best is None or above is None or above - best < MIN_BISECT_GAP:
                break
            rate = round((best + above) / 2, -1)
            step = self._sweep_step(rate)
            (healthy if step.healthy(p.slo_p99_ms) else unhealthy).append(rate)
        sustained = max(healthy, default=None)
        self.results["sustained_rate"] = sustained
        self.results["unhealthy_below_sustained"] = sorted(
            r for r in unhealthy if sustained and r < sustained
        )

    def _equal_rate(self, rate: float) -> dict[str, Any]:
        """B1 and B2 open loop at S's sustained rate: the baselines' CPU where S was measured.

        The CPU bound uses the baselines' closed-loop CPU, where every process serves bursts;
        here they get S's arrival pattern instead. Only the servers' CPU is comparable: the
        B2 client spins between sends, so its own CPU says nothing at this rate.
        """
        p = self.profile
        self.log(f"baselines open loop at S's sustained rate, {rate:g}/s")
        conns = connections_for(rate)
        b1 = self._http("B1", self.echo, self.echo.open_loop(rate, p.sweep_seconds, p.warmup, conns))
        b2 = self._measure("B2", lambda: self.pingpong.open_loop(rate, p.sweep_seconds, p.warmup))
        return {"rate": rate, "B1": b1.to_json(), "B2": b2.to_json()}

    def _sweep_step(self, rate: float) -> Step:
        p = self.profile
        self.log(f"S open loop at {rate:g}/s")
        run = self.gateway.open_loop(rate, p.sweep_seconds, p.warmup, connections_for(rate))
        step = self._http("S", self.gateway, run)
        self.results["sweep"].append(step.to_json())
        return step

    def _stages(self) -> dict[str, Any]:
        p = self.profile
        self.log("stage breakdown")
        trace: Trace = []
        run = self.gateway.open_loop(
            p.low_rate, p.stage_seconds, p.warmup, connections_for(p.low_rate), trace
        )
        step = self._http("S", self.gateway, run)
        result = breakdown(trace)
        result["end_to_end_ms"] = step.latency_ms
        return result

    def _soak(self, requests: int, rate: float | None) -> dict[str, Any]:
        if rate is None:
            sustained = self.results.get("sustained_rate") or 0.0
            rate = max(MIN_SOAK_RATE, round(SOAK_RATE_SHARE * sustained, -1))
        seconds = requests / rate
        self.log(f"soak: {requests} requests at {rate:g}/s ({seconds:.0f} s)")
        samples: list[dict[str, float]] = []

        async def sample_memory(until: asyncio.Future[Step]) -> None:
            # Periodic sampling of another process's RSS, not synchronisation.
            while not until.done():
                samples.append(self._rss())
                await asyncio.wait({until}, timeout=max(1.0, seconds / 50))

        async def soak() -> Step:
            run = asyncio.ensure_future(self.gateway.open_loop(rate, seconds, 0, connections_for(rate)))
            await sample_memory(run)
            samples.append(self._rss())
            return await run

        step = self._http("S", self.gateway, soak())
        # Growth after the first tenth: start-up allocations and warm caches are not leaks.
        base = samples[max(1, len(samples) // 10)] if len(samples) > 1 else samples[0]
        growth = {
            name: round((samples[-1][name] - base[name]) / base[name], 4) for name in base if base[name]
        }
        return {
            "requests": requests,
            "rate": rate,
            "step": step.to_json(),
            "rss_growth": growth,
            "rss_mb": {name: [round(s[name] / 2**20, 1) for s in samples] for name in base},
        }

    def _rss(self) -> dict[str, float]:
        pids = self.stack.pids
        return {name: float(rss_bytes(pids[name])) for name in ("gateway", "worker") if name in pids}

    def _http(self, target: str, generator: LoadGenerator, run: Coroutine[Any, Any, Step]) -> Step:
        step = self._measure(target, lambda: self.runner.run(run), lambda: generator.exchanges)
        if target == "S":
            step.pending_after = self.stack.pending()
            self.results["pending_after"].append(step.pending_after)
        return step

    def _measure(
        self, target: str, run: Callable[[], Step], exchanges: Callable[[], int] | None = None
    ) -> Step:
        count = exchanges or (lambda: self.pingpong.exchanges)
        self.stack.check_alive()
        before, before_count, started = self.meter.sample(), count(), time.perf_counter()
        step = run()
        after, elapsed = self.meter.sample(), time.perf_counter() - started
        step.target = target
        path = PATHS[target]
        served = count() - before_count
        step.cpu_us_per_request = CpuMeter.per_request(before.only(path), after.only(path), served)
        step.switches_per_request = CpuMeter.switches_per_request(before.only(path), after.only(path), served)
        step.cpu_cores = CpuMeter.utilisation(before, after, elapsed)
        self.log(f"  {step.label()}: {_brief(step)}")
        return step


def _brief(step: Step) -> str:
    latency = step.latency_ms
    return (
        f"{step.achieved_rate:g}/s ok={step.ok} err={step.errors} to={step.timeouts} "
        f"p50={latency.get('p50')} p99={latency.get('p99')} ms cpu={step.cpu_us_per_request.get('total')} µs"
    )


def _saturated(step: Step, slo_p99_ms: float) -> bool:
    """Past the knee: the rate is not achieved, >1 % fail, or p99 is ten times the SLO."""
    offered = step.offered_rate or 0.0
    p99 = step.latency_ms.get("p99", float("inf"))
    return (
        step.achieved_rate < SATURATED_RATE_SHARE * offered
        or step.error_ratio > 0.01
        or p99 > 10 * slo_p99_ms
    )

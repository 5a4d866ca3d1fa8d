"""`Suite`: the ordered steps of one benchmark run, floors, baselines and system side by side.

Order (PERFORMANCE.md "Run order"): low-load rounds of the floors (FH, FK), B1, B2 and S
interleaved; closed-loop rounds for maximum rate and CPU per request; sustained rounds, each
an open-loop sweep of S relative to its closed-loop maximum, bisected at the SLO knee, and
the same sweep of the Kafka floor relative to its own; the baselines at S's sustained rate; the same sweep
of the baselines side by side (B1 ∥ B2) relative to the CPU bound; a stage breakdown; an
optional soak. Each step records CPU per request of the processes on its path only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import statistics
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Any

from .cpu import CpuMeter, rss_bytes
from .kafkafloor import KafkaFloorClient
from .loadgen import LoadGenerator, connections_for, new_loop
from .pingpong import PingPong
from .profile import Profile
from .remote import RemotePingPong
from .stack import HTTP_FLOOR, KAFKA_FLOOR, Stack
from .stages import Trace, breakdown
from .step import Step
from .targets import cpu_bound, median_rate

# Processes on each target's path. "client" is the HTTP load generator or the Kafka client:
# the bench process, except for B2 side by side with B1, where it is a child process.
PATHS = {
    "FH": ("client", HTTP_FLOOR),
    "FK": ("client", KAFKA_FLOOR, "broker"),
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

_Found = tuple[float | None, list[float], float | None]
"""One side's sweep in a sustained round: sustained rate, unhealthy rates below it, peak."""


class Suite:
    """Runs the steps against a started `Stack`; results accumulate in `results`."""

    def __init__(self, stack: Stack, profile: Profile, log: Callable[[str], None]) -> None:
        self.stack = stack
        self.profile = profile
        self.log = log
        self.meter = CpuMeter({**stack.pids, "client": os.getpid()})
        self.echo = LoadGenerator("127.0.0.1", stack.echo_port)
        self.gateway = LoadGenerator("127.0.0.1", stack.gateway_port, headers=stack.options.request_headers)
        self.httpfloor = LoadGenerator("127.0.0.1", stack.floor_port)
        self.pingpong = PingPong(stack.kafka_settings, stack.request_topic, stack.pingpong_topic)
        self.runner = asyncio.Runner(loop_factory=new_loop)
        self.results: dict[str, Any] = {
            "low": [],
            "closed": [],
            "sweep": [],
            "kafka_floor_sweep": [],
            "sustained_rounds": [],
            "side_by_side_sweep": [],
            "pending_after": [],
        }

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
        fk_max = statistics.median(r["FK"]["achieved_rate"] for r in self.results["closed"])
        for number in range(p.sweep_rounds):
            self.log(f"sustained round {number + 1}/{p.sweep_rounds}")
            self.results["sustained_rounds"].append(self._sustained_round(number, s_max, fk_max))
        rounds = self.results["sustained_rounds"]
        self.results["sustained_rate"] = median_rate(rounds, "S")
        self.results["kafka_floor_sustained_rate"] = median_rate(rounds, "FK")
        if self.results["sustained_rate"]:
            self.results["equal_rate"] = self._equal_rate(self.results["sustained_rate"])
        self._side_by_side_sweep()
        self.stack.wait_for_worker()  # its overloaded rates leave a backlog behind
        self.results["stages"] = self._stages()
        if soak:
            self.results["soak"] = self._soak(soak, soak_rate)
        return self.results

    def _warm_up(self) -> dict[str, float]:
        """Load every path once (JIT, connections, caches), then measure idle CPU per process.

        A broker that has just started compiles and compacts for a while; its idle CPU is
        reported so a reader can tell background load from per-request cost. The Kafka
        floor is not warmed here: its server and client start afresh for each of its steps
        (`_kafka_floor`), whose warm-up window covers that.
        """
        p = self.profile
        self.log("warm-up")
        self.runner.run(self.httpfloor.closed_loop(p.closed_connections, p.closed_seconds, 0))
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

        def http(target: str, generator: LoadGenerator) -> Step:
            run = generator.open_loop(p.low_rate, p.low_seconds, p.warmup, conns)
            return self._http(target, generator, run)

        # The target's three steps back to back: the host's background moves by the minute.
        fh = http("FH", self.httpfloor)
        fk = self._kafka_floor_once(lambda client: client.open_loop(p.low_rate, p.low_seconds, p.warmup))
        s = http("S", self.gateway)
        b1 = http("B1", self.echo)
        b2 = self._measure("B2", lambda: self.pingpong.open_loop(p.low_rate, p.low_seconds, p.warmup))
        b2_one = self._measure("B2", lambda: self.pingpong.paced(p.low_rate, p.low_seconds, p.warmup))
        steps = {"FH": fh, "B1": b1, "FK": fk, "B2": b2, "B2_one": b2_one, "S": s}
        return {name: step.to_json() for name, step in steps.items()}

    def _closed_round(self) -> dict[str, Any]:
        p = self.profile
        n = p.closed_connections
        fh = self._http("FH", self.httpfloor, self.httpfloor.closed_loop(n, p.closed_seconds, p.warmup))
        b1 = self._http("B1", self.echo, self.echo.closed_loop(n, p.closed_seconds, p.warmup))
        fk = self._kafka_floor_once(
            lambda client: client.pipelined(p.pipeline_window, p.closed_seconds, p.warmup)
        )
        b2 = self._measure(
            "B2", lambda: self.pingpong.pipelined(p.pipeline_window, p.closed_seconds, p.warmup)
        )
        s = self._http("S", self.gateway, self.gateway.closed_loop(n, p.closed_seconds, p.warmup))
        steps = {"FH": fh, "B1": b1, "FK": fk, "B2": b2, "S": s}
        return {name: step.to_json() for name, step in steps.items()}

    def _sustained_round(self, number: int, s_max: float, fk_max: float) -> dict[str, Any]:
        """One sweep of S and one of the Kafka floor; which goes first alternates by round.

        The sustained target is the median over rounds of the ratio within each, as the
        low-load targets are: one sweep per side was one draw of the broker's pauses.
        Each side's peak (its highest healthy rate at any step) is kept beside it.
        """
        sides: list[tuple[str, Callable[[], _Found]]] = [
            ("S", lambda: self._s_sweep(number, s_max)),
            ("FK", lambda: self._kafka_floor_sweep(number, fk_max)),
        ]
        found: dict[str, Any] = {"round": number}
        for side, search in sides if number % 2 == 0 else sides[::-1]:
            found[side], found[f"{side}_unhealthy_below"], found[f"{side}_peak"] = search()
        return found

    def _s_sweep(self, number: int, s_max: float) -> _Found:
        """S open loop at fractions of its closed-loop maximum; then the worker's backlog drained.

        Its whole plan can overload the worker, which would go on serving those requests
        while the Kafka floor is measured next, on the same cores.
        """
        found = self._search(s_max, self._sweep_step, number, "sweep")
        self.stack.wait_for_worker()
        return found

    def _kafka_floor_sweep(self, number: int, fk_max: float) -> _Found:
        """The Kafka floor open loop at fractions of its closed-loop maximum, searched as S's is.

        Its client only waits in ``poll()`` (`PingPong.open_loop`, not precise): S's load
        generator wakes at most once a millisecond too, and polling without waiting would take
        a core from the floor's server and the broker. One server and client serve the sweep.
        """
        p = self.profile
        with self._kafka_floor() as (client, meter):

            def step(rate: float) -> Step:
                self.log(f"Kafka floor open loop at {rate:g}/s")
                run = functools.partial(client.open_loop, rate, p.sweep_seconds, p.warmup, precise=False)
                return self._measure("FK", run, lambda: client.exchanges, meter)

            return self._search(fk_max, step, number, "kafka_floor_sweep")

    def _search(self, reference: float, step: Callable[[float], Step], number: int, into: str) -> _Found:
        """`sweep` over the profile's whole plan of fractions of ``reference``, climbing.

        One ``step`` per rate, each kept in ``results[into]`` with the round ``number`` that
        measured it. Returns the sustained rate, the unhealthy rates below it and the peak:
        the highest healthy rate of any step, above a saturated one too (the target's
        words, "the highest rate with p99 within the SLO", read literally).
        """
        p = self.profile
        healthy: list[float] = []

        def measure(rate: float) -> list[Step]:
            measured = step(rate)
            self.results[into].append({**measured.to_json(), "round": number})
            if measured.healthy(p.slo_p99_ms):
                healthy.append(rate)
            return [measured]

        rates = _rates(p.sweep_fractions, reference)
        sustained, unhealthy = sweep(
            rates, measure, p.slo_p99_ms, p.bisect_steps, EXTRA_STEPS, whole_plan=True
        )
        return sustained, unhealthy, max(healthy, default=None)

    @contextlib.contextmanager
    def _kafka_floor(self) -> Iterator[tuple[KafkaFloorClient, CpuMeter]]:
        """`Stack.kafka_floor_client` for the block, and the suite's meter plus the floor's server."""
        with self.stack.kafka_floor_client() as (client, pid):
            yield client, CpuMeter({**self.meter.pids, KAFKA_FLOOR: pid})

    def _kafka_floor_once(self, run: Callable[[KafkaFloorClient], Step]) -> Step:
        """One step of the Kafka floor: ``run`` with a client of a server started for it."""
        with self._kafka_floor() as (client, meter):
            return self._measure("FK", lambda: run(client), lambda: client.exchanges, meter)

    def _side_by_side_sweep(self) -> None:
        """B1 and B2 together, open loop at the same rates: what the baselines sustain side by side.

        The CPU bound assumes the baselines' costs add up. Side by side they do S's work
        (HTTP client and server, Kafka client, worker and broker, on the same cores)
        without the gateway joining it, so this tests that assumption directly. B2 runs in
        a child process (its own core and GIL) while B1 runs here, from the
        same time zero, at fractions of the CPU bound. A rate is healthy when B1 and B2
        both are (each p99 <= the SLO, rate achieved, no errors), saturated when either
        is; `sweep` finds the highest healthy rate, with no climbing past the last
        fraction (the bound is a ceiling).
        """
        p = self.profile
        bound = cpu_bound(self.results["closed"])
        self.results["side_by_side_sustained_rate"] = None
        self.results["side_by_side_unhealthy_below_sustained"] = []
        if not bound or not p.side_by_side_fractions:
            return
        stack = self.stack
        # The bench's own client would fetch the child's replies too, in B1's and B2's CPU.
        with (
            self.pingpong.set_aside(),
            RemotePingPong(stack.kafka_settings, stack.request_topic, stack.pingpong_topic) as remote,
        ):
            # The same processes as the suite's meter, but B2's client is the child.
            meter = CpuMeter({**self.meter.pids, "client": remote.pid})
            sustained, unhealthy = sweep(
                _rates(p.side_by_side_fractions, bound),
                lambda rate: self._side_by_side_step(remote, meter, rate),
                p.slo_p99_ms,
                p.bisect_steps,
            )
        self.results["side_by_side_sustained_rate"] = sustained
        self.results["side_by_side_unhealthy_below_sustained"] = unhealthy

    def _side_by_side_step(self, remote: RemotePingPong, meter: CpuMeter, rate: float) -> list[Step]:
        p = self.profile
        self.log(f"B1 ∥ B2 open loop at {rate:g}/s each")
        self.stack.check_alive()
        b1_window = _Window(self.meter, lambda: self.echo.exchanges)
        b2_window = _Window(meter, lambda: remote.exchanges)
        # B2 starts in the child when B1's schedule does: one time zero, the same windows.
        start_b2 = functools.partial(remote.start_open_loop, rate, p.sweep_seconds, p.warmup)
        run = self.echo.open_loop(rate, p.sweep_seconds, p.warmup, connections_for(rate), on_start=start_b2)
        b1 = self._charge(b1_window, self.runner.run(run), "B1")
        b2 = self._charge(b2_window, remote.result(), "B2")
        b1_p99, b2_p99 = b1.latency_ms.get("p99"), b2.latency_ms.get("p99")
        self.results["side_by_side_sweep"].append(
            {
                "rate": rate,
                "B1": b1.to_json(),
                "B2": b2.to_json(),
                "p99_sum_ms": None if b1_p99 is None or b2_p99 is None else round(b1_p99 + b2_p99, 3),
                "healthy": b1.healthy(p.slo_p99_ms) and b2.healthy(p.slo_p99_ms),
            }
        )
        return [b1, b2]

    def _equal_rate(self, rate: float) -> dict[str, Any]:
        """B1 and B2 open loop at S's sustained rate: the baselines' CPU where S was measured.

        The CPU bound uses the baselines' closed-loop CPU, where every process serves bursts;
        here they get S's arrival pattern instead. Only the servers' CPU is comparable: the
        B2 client's precise waits are not the HTTP generator's, so its own CPU says little.
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
        return self._http("S", self.gateway, run)

    def _stages(self) -> dict[str, Any]:
        """S at the low-load rate through a second gateway with timing on (`Stack.timed_gateway`)."""
        p = self.profile
        self.log("stage breakdown")
        trace: Trace = []
        with self.stack.timed_gateway() as (port, pid):
            timed = LoadGenerator("127.0.0.1", port, headers=self.stack.options.request_headers)
            window = _Window(CpuMeter({**self.meter.pids, "gateway": pid}), lambda: timed.exchanges)
            run = timed.open_loop(p.low_rate, p.stage_seconds, p.warmup, connections_for(p.low_rate), trace)
            step = self._charge(window, self.runner.run(run), "S")
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
        self,
        target: str,
        run: Callable[[], Step],
        exchanges: Callable[[], int] | None = None,
        meter: CpuMeter | None = None,
    ) -> Step:
        self.stack.check_alive()
        window = _Window(meter or self.meter, exchanges or (lambda: self.pingpong.exchanges))
        return self._charge(window, run(), target)

    def _charge(self, window: _Window, step: Step, target: str) -> Step:
        window.charge(step, target)
        self.log(f"  {step.label()}: {step.brief()}")
        return step


class _Window:
    """A step's measurement window: CPU of ``meter``'s processes and requests, from creation."""

    def __init__(self, meter: CpuMeter, exchanges: Callable[[], int]) -> None:
        self._meter = meter
        self._exchanges = exchanges
        self._before, self._count, self._started = meter.sample(), exchanges(), time.perf_counter()

    def charge(self, step: Step, target: str) -> None:
        """Name ``step``'s target; per request, the CPU and switches of its path until now."""
        after, elapsed = self._meter.sample(), time.perf_counter() - self._started
        before, path = self._before, PATHS[target]
        served = self._exchanges() - self._count
        step.target = target
        step.cpu_us_per_request = CpuMeter.per_request(before.only(path), after.only(path), served)
        step.switches_per_request = CpuMeter.switches_per_request(before.only(path), after.only(path), served)
        step.cpu_cores = CpuMeter.utilisation(before, after, elapsed)
        step.host_cores = CpuMeter.host(before, after, elapsed)


def sweep(
    rates: list[float],
    measure: Callable[[float], Sequence[Step]],
    slo_p99_ms: float,
    bisect_steps: int,
    climb: int = 0,
    *,
    whole_plan: bool = False,
) -> tuple[float | None, list[float]]:
    """Open-loop steps up to past the knee, then bisect below the first unhealthy rate.

    ``measure`` runs one rate and returns its steps: the rate is healthy when all of them
    are, saturated when any is. A noisy neighbour can push one step's p99 over the SLO,
    so an unhealthy rate does not end the sweep; only saturation does (rate not achieved,
    errors, or p99 far past the SLO). While the last planned rate is healthy, up to
    ``climb`` more follow, 25 % apart. Returns the sustained rate (the highest healthy
    one) and the unhealthy rates below it, which are reported, not hidden.

    With ``whole_plan`` the planned rates above a saturated one are measured too, after
    the bisection, for whoever reads the steps: a system whose cost per request falls as
    its client batches can be healthy again past a saturated rate. They do not change the
    sustained rate, which is what load rising from zero can rely on.
    """
    healthy: list[float] = []
    unhealthy: list[float] = []
    rates = list(rates)
    beyond: list[float] = []

    def run(rate: float) -> tuple[bool, bool]:
        steps = measure(rate)
        ok = all(step.healthy(slo_p99_ms) for step in steps)
        (healthy if ok else unhealthy).append(rate)
        return ok, any(_saturated(step, slo_p99_ms) for step in steps)

    while rates:
        rate = rates.pop(0)
        ok, saturated = run(rate)
        if saturated:
            beyond = rates if whole_plan else []
            break
        if not rates and climb and ok:
            # The planned rates underestimated the knee: keep climbing, boundedly.
            rates.append(round(rate * 1.25, -1))
            climb -= 1
    for _ in range(bisect_steps):
        best = max(healthy, default=None)
        above = min((rate for rate in unhealthy if best is None or rate > best), default=None)
        if best is None or above is None or above - best < MIN_BISECT_GAP:
            break
        run(round((best + above) / 2, -1))
    for rate in beyond:
        measure(rate)
    sustained = max(healthy, default=None)
    return sustained, sorted(r for r in unhealthy if sustained and r < sustained)


def _rates(fractions: Sequence[float], reference: float) -> list[float]:
    """Open-loop rates at ``fractions`` of ``reference``, rounded to tens, at least 10/s."""
    return [round(max(10.0, fraction * reference), -1) for fraction in fractions]


def _saturated(step: Step, slo_p99_ms: float) -> bool:
    """Past the knee: the rate is not achieved, >1 % fail, or p99 is ten times the SLO."""
    offered = step.offered_rate or 0.0
    p99 = step.latency_ms.get("p99", float("inf"))
    return (
        step.achieved_rate < SATURATED_RATE_SHARE * offered
        or step.error_ratio > 0.01
        or p99 > 10 * slo_p99_ms
    )

"""Soak with faults: a long load at 70 % of the rate its topology sustains, a worker SIGKILLed every 2 min.

The rate: `chaos.capacity` first searches, with the benchmark's criteria (every call 200, p99
within 25 ms, the rate achieved), for the highest rate this topology sustains, up to S's
sustained rate in `docs/benchmarks/results.json`, and the soak runs at 70 % of it
(``CHAOS_SOAK_RATE`` sets it instead). 70 % of the benchmark's own rate, measured on one broker,
one gateway and one worker, left the soak's two cores ~97 % busy: three brokers replicating every
record, two gateways, three workers and the harness, one call in 1.4 million answered 104 ms past
its deadline net of the machine's stalls. That was a load above 70 % of what the machine holds,
not the 30 % of headroom that 70 % stands for.

Production topology on 3 brokers: 2 gateways (the load's virtual users alternate between them) and
3 workers. Three, not two: every 20th call holds a handler slot until its 2 s deadline (about
``rate / 10`` slots busy at once), and after a kill the survivors must hold those as
well as the live traffic within their 64 slots each; one survivor alone would be saturated by the
late calls and the fault would test the slot limit instead of recovery. Kills alternate between
worker1 and worker2; worker3 is never killed, so it gives a memory series over the whole run (it
goes through every rebalance), while each killed incarnation lives only 2-4 minutes.

Figures, beside the invariants every scenario keeps (0 cross-delivered, 0 acknowledged lost,
0 duplicate effects, pending 0 once the load stops):

* Pending back to the steady state after every kill. The pending map is never ~0 under this load:
  it holds every call in flight, and the late calls alone keep ``rate / LATE_EVERY * WAIT`` there
  (22 at 224/s). "Back" means the gateways' summed ``rpcgw_pending_requests``, sampled every
  0.5 s, stays at most ``PENDING_HEADROOM * rate * (WAIT / LATE_EVERY + P99_SLO)`` for 1.5 s
  (three samples) after its peak, within ``RECOVERY_LIMIT`` s of the kill. A stuck kill holds
  far more: a third of the request partitions has no consumer, ~``rate / 3 * WAIT`` calls (150 at 224/s).
* RSS slope (least squares, MiB/hour) of each gateway and of worker3 after the ramp and the
  first ``WARM_UP`` s at full rate (start-up allocations, caches and allocator arenas filling up
  are not leaks: the gateways grew from 80 to 94 MiB over their first 4 minutes, then held);
  each killed incarnation's last RSS. Flat means that the slope of at least one half of that
  window (`chaos.memory.halves`) is under ``RSS_SLOPE_LIMIT`` = 5 MiB/h: a leak grows in both
  halves, a high-water mark steps once (worker3 stepped by 1.8-1.9 MiB once in each of three
  soaks, at minutes 10, 24 and 22, flat before and after; the line through the whole window
  fitted that as +3.0, +5.9 and +5.9 MiB/h). 224 calls/s are 0.8 M calls/h, so a half of
  13 minutes still catches any per-call leak of 7 bytes or more, any
  per-late-call leak of 130 bytes, any per-kill (rebalance) leak of 170 KiB. Judged only over at
  least ``MIN_FIT`` s: a shorter run's slope is still the tail of the start-up growth (5-minute
  runs fitted +25 to +120 MiB/h on gateways that grew 1-8 MiB), so it is reported, not judged.
* Achieved send rate against the requested one: the harness (Python, one core at most) shares
  the 2 cores with 3 brokers, 2 gateways and 3 workers.

The calls start with a 2-minute ramp (`RAMP`) before the soak proper: the brokers start with the
scenario, and cold they answered even 252 calls/s in 1-2 s for the first 20 s, the gateways so
short of CPU that a few calls were answered 0.5 s past their deadline. The load runs as
consecutive 30 s `Load` segments on one schedule: `Load` charges every late answer with each of
its own loop stalls, quadratic in a load's length, and one 30-minute load would spend minutes
there. All outcomes are accounted once at the end (0.4 M at 224/s for 30 minutes; 1.4 M, ~1 GB in
the harness, at 756/s), since the ledger's duplicate and redelivery counts are whole-run totals.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import math
import os
import statistics
import time
from collections.abc import Callable

import orjson

from chaos.capacity import SLO_P99_MS, sustained_rate
from chaos.load import CONNECTION_ERROR, Load
from chaos.memory import RssWatch, halves, rss_mib, trend
from chaos.report import DEADLINE_SLACK, Figures
from chaos.scenarios.catalogue import Scenario, closing
from chaos.service import ROOT, Service
from chaos.stack import PENDING, Kafka, Stack

MINUTES_ENV = "CHAOS_SOAK_MINUTES"
RATE_ENV = "CHAOS_SOAK_RATE"
DEFAULT_MINUTES = 30.0
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"
RATE_SHARE = 0.7
FALLBACK_SUSTAINED = 1000.0
"""Calls/s assumed when `RESULTS` has no sustained rate: the order `make bench` finds on 2 cores."""
KILL_EVERY = 120.0
KILL_TAIL = 60.0
"""No kill closer than this to the end of the load: its recovery must be seen under load."""
SEGMENT = 30.0
RAMP = (0.1, 0.25, 0.5, 0.75)
"""Shares of the rate of the `SEGMENT`-long steps before the soak proper."""
WAIT = 2
LATE_EVERY = 20
P99_SLO = SLO_P99_MS / 1000
"""The benchmark's p99 bound (s): calls in flight on time are at most ``rate * P99_SLO`` at p99."""
PENDING_HEADROOM = 1.5
"""For the harness's uneven sending: a loop stall releases its backlog of calls at once."""
PENDING_EVERY = 0.5
CALM_SAMPLES = 3
RECOVERY_LIMIT = 30.0
"""Session timeout (6 s), the rebalance and the restarted worker's join, the stuck calls' 2 s deadline."""
BEFORE_KILL = 30.0
"""The steady-state pending level reported for a kill is the median over this long before it."""
RSS_EVERY = 10.0
WARM_UP = 180.0
"""Seconds at full rate (after the ramp) left out of the RSS slopes."""
MIN_FIT = 20 * 60.0
RSS_SLOPE_LIMIT = 5.0


def benchmarked_rate() -> tuple[float, str]:
    """S's sustained rate in `RESULTS` (calls/s), and where that figure comes from."""
    try:
        sustained = float(orjson.loads(RESULTS.read_bytes())["figures"]["sustained_rate"])
    except (OSError, KeyError, TypeError, ValueError):  # orjson.JSONDecodeError is a ValueError
        return FALLBACK_SUSTAINED, f"no sustained rate in {RESULTS.relative_to(ROOT)}: assumed"
    return sustained, f"S's sustained rate in {RESULTS.relative_to(ROOT)}"


async def soak_faults(kafka: Kafka, figures: Figures) -> None:
    """The soak; its length and rate come from ``CHAOS_SOAK_MINUTES`` and ``CHAOS_SOAK_RATE``."""
    seconds = float(os.environ.get(MINUTES_ENV, DEFAULT_MINUTES)) * 60
    stack = Stack(kafka, "soak-faults")
    async with closing(stack, figures):
        victims = [stack.add_worker(), stack.add_worker()]
        steady = stack.add_worker()
        stack.add_gateway()
        stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        if configured := os.environ.get(RATE_ENV):
            rate, origin = float(configured), RATE_ENV
        else:
            reference, source = benchmarked_rate()
            sustained, steps = await asyncio.to_thread(sustained_rate, stack.urls, reference)
            figures.notes["sustained rate on this topology: steps"] = [
                f"{step.label()}: {step.brief()}" for step in steps
            ]
            if sustained is None:
                figures.require(False, f"no rate up to {reference:g}/s was sustained on this topology")
                return
            rate = round(RATE_SHARE * sustained)
            origin = (
                f"{RATE_SHARE * 100:g} % of {sustained:g}/s, the sustained rate measured on this topology;"
                f" {source}: {reference:g}/s"
            )
        figures.notes["rate requested"] = f"{rate:g}/s ({origin}); {seconds / 60:g} min"
        soak = Soak(stack, figures, seconds, rate, victims)
        await soak.run()
        soak.report([*(g.name for g in stack.gateways), steady.name])


class Soak:
    """The load in segments, the kill schedule and the samplers of one soak, then its figures."""

    def __init__(
        self, stack: Stack, figures: Figures, seconds: float, rate: float, victims: list[Service]
    ) -> None:
        self._stack = stack
        self._figures = figures
        self._seconds = seconds
        self._rate = rate
        self._victims = victims
        processes = {s.name: _pid_of(s) for s in [*stack.gateways, *stack.workers]}
        self._memory = RssWatch({**processes, "harness": os.getpid}, RSS_EVERY)
        self._pending: list[tuple[float, float]] = []
        """``(time.perf_counter, sum of the gateways' pending gauges)`` every `PENDING_EVERY` s."""
        self._kills: list[tuple[float, float | None]] = []
        """``(time.perf_counter at SIGKILL, seconds until the new incarnation was ready or None)``."""
        self._loads: list[Load] = []
        self._missed = 0
        """Pending samples lost: a gateway's /metrics did not answer within 2 s."""
        self._started = self._ended = time.perf_counter()
        """`time.perf_counter` of the first call and after the last answer."""

    async def run(self) -> None:
        """Load, kills and samplers together, until the last segment is answered."""
        watch = self._stack.watch_gateways()  # one run-queue sampler for the whole run (`explain_late`)
        samplers = [asyncio.create_task(s) for s in (watch.run(), self._memory.run(), self._sample_pending())]
        self._started = time.perf_counter()
        try:
            await asyncio.gather(self._segments(), self._faults())
        finally:
            for sampler in samplers:
                sampler.cancel()
            gc.unfreeze()
        self._ended = time.perf_counter()
        for ended in await asyncio.gather(*samplers, return_exceptions=True):
            if not isinstance(ended, asyncio.CancelledError):
                raise RuntimeError("a sampler failed") from ended

    @property
    def _soak_start(self) -> float:
        """`time.perf_counter` when the ramp ends and the soak proper (and its kill schedule) starts."""
        return self._started + len(RAMP) * SEGMENT

    async def _segments(self) -> None:
        steps = [(share, SEGMENT) for share in RAMP]
        full = range(math.ceil(self._seconds / SEGMENT))
        steps += [(1.0, min(SEGMENT, self._seconds - index * SEGMENT)) for index in full]
        runs = []
        for index, (share, seconds) in enumerate(steps):
            # The load's schedule, not synchronisation: a segment starts as the previous stops sending.
            await asyncio.sleep(max(0.0, self._started + index * SEGMENT - time.perf_counter()))
            # The outcomes kept so far are never garbage: out of the collector's sight, its full
            # passes stop scanning a million of them (~0.3 s each, a stall of the harness's loop).
            gc.freeze()
            rate = share * self._rate
            load = Load(
                self._stack.urls,
                total=round(rate * seconds),
                rate=rate,
                # Enough virtual users for half the calls held to the deadline (a kill holds a
                # third), and no more: a user idle past the gateways' keep-alive (5 s) finds its
                # connection closed, a connection error (likely the cause of 18 in a run whose
                # ramp gave 756 users 252 calls/s; none at full rate).
                concurrency=max(64, math.ceil(rate * WAIT / 2)),
                wait=WAIT,
                late_every=LATE_EVERY,
            )
            self._loads.append(load)
            runs.append(asyncio.create_task(load.run()))
        await asyncio.gather(*runs)

    async def _faults(self) -> None:
        index = 1
        while index * KILL_EVERY <= self._seconds - KILL_TAIL:
            # The fault schedule, not synchronisation: one kill every KILL_EVERY seconds.
            await asyncio.sleep(max(0.0, self._soak_start + index * KILL_EVERY - time.perf_counter()))
            victim = self._victims[(index - 1) % len(self._victims)]
            self._memory.sample()  # the incarnation's last RSS
            killed = time.perf_counter()
            await asyncio.to_thread(victim.kill)
            victim.restart()
            ready = await asyncio.to_thread(victim.wait_readiness, True, 90)
            self._figures.mark("worker SIGKILL until restarted and ready", killed)
            self._kills.append((killed, None if ready is None else time.perf_counter() - killed))
            index += 1

    async def _sample_pending(self) -> None:
        gateways = self._stack.gateways
        while True:  # cancelled when the load ends
            try:
                value = await asyncio.to_thread(lambda: sum(g.metric(PENDING) for g in gateways))
            except RuntimeError:  # a starved gateway's /metrics did not answer: a gap in the series
                self._missed += 1
            else:
                self._pending.append((time.perf_counter(), value))
            await asyncio.sleep(PENDING_EVERY)  # the sampling interval, not synchronisation

    def report(self, long_lived: list[str]) -> None:
        """Account the calls and the ledger; the soak's own figures and checks."""
        figures, stack = self._figures, self._stack
        late = sum(len(load.outcomes) // LATE_EVERY for load in self._loads)
        _load_figures(figures, self._loads, self._rate, self._started, self._soak_start)
        stack.account(figures, *self._loads)
        self._loads.clear()  # the outcomes are folded in; the timeline keeps what the plot needs
        figures.notes["harness RSS after accounting (MiB)"] = round(rss_mib(os.getpid()) or 0.0)
        threshold = PENDING_HEADROOM * self._rate * (WAIT / LATE_EVERY + P99_SLO)
        _pending_figures(figures, self._pending, self._kills, self._ended, threshold)
        figures.notes["pending samples missed (/metrics not answering within 2 s)"] = self._missed
        # Short validation runs scale the warm-up down, so a slope is still fitted over most of the run.
        warm_up = min(WARM_UP, self._seconds / 5)
        victims = [v.name for v in self._victims]
        _memory_figures(figures, self._memory, long_lived, victims, self._soak_start + warm_up)
        figures.notes["worker incarnations ready after SIGKILL (s)"] = [
            "never" if ready is None else round(ready, 1) for _, ready in self._kills
        ]
        closed: collections.Counter[str] = collections.Counter()
        for gateway in stack.gateways:
            closed.update(gateway.by_label("rpcgw_connections_closed_total", "reason"))
        # Beside the callers' connection errors: an idle close racing a call shows up here as "idle".
        figures.notes["connections the gateways closed, by reason"] = {r: n for r, n in closed.items() if n}
        figures.notes["late replies (rpcgw_late_replies_total)"] = sum(
            g.metric("rpcgw_late_replies_total") for g in stack.gateways
        )
        timeouts = figures.statuses.get(504, 0)
        figures.notes["504: late calls / others (caught in kills)"] = f"{late} / {timeouts - late}"
        figures.require(bool(self._kills), "the run is too short for a kill")
        figures.require(all(r is not None for _, r in self._kills), "a restarted worker never got ready")
        figures.require(timeouts >= late, "fewer 504 than late calls: a late call was answered in time")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")
        figures.require(
            set(figures.statuses) <= {200, 503, 504}, f"unexpected statuses {sorted(figures.statuses)}"
        )


def _pid_of(service: Service) -> Callable[[], int]:
    return lambda: service.process.pid


def _load_figures(figures: Figures, loads: list[Load], rate: float, started: float, soak: float) -> None:
    """Send rate achieved after the ramp (overall, slowest 10 s); late and cut calls by minute."""
    sent = sorted(o.sent_at for load in loads for o in load.outcomes if o.sent_at >= soak)
    if len(sent) >= 2:
        per_window = collections.Counter(int((t - sent[0]) // 10) for t in sent)
        whole = [per_window[w] / 10 for w in range(int((sent[-1] - sent[0]) // 10))]  # complete windows
        figures.notes["send rate achieved after the ramp: overall; slowest / median 10 s (calls/s)"] = (
            f"{len(sent) / (sent[-1] - sent[0]):.0f}; {min(whole, default=0):.0f} / "
            f"{statistics.median(whole) if whole else 0:.0f} (requested {rate:g})"
        )
    late: collections.Counter[int] = collections.Counter()
    cut: collections.Counter[int] = collections.Counter()
    for load in loads:
        for o in load.outcomes:
            if o.past_deadline_net > DEADLINE_SLACK:
                late[int((o.sent_at - started) // 60)] += 1
            if o.status == CONNECTION_ERROR:
                cut[int((o.sent_at - started) // 60)] += 1
    figures.notes["by minute sent: calls > 100 ms past the deadline (net) / connection errors"] = {
        minute: f"{late[minute]} / {cut[minute]}" for minute in sorted(late | cut)
    }


def _pending_figures(
    figures: Figures,
    pending: list[tuple[float, float]],
    kills: list[tuple[float, float | None]],
    ended: float,
    threshold: float,
) -> None:
    """Per kill: steady level before it, peak after it, seconds until back at most ``threshold``."""
    rows = []
    peaks = []
    for index, (killed, _) in enumerate(kills):
        until = kills[index + 1][0] if index + 1 < len(kills) else ended
        before = [v for t, v in pending if killed - BEFORE_KILL <= t < killed]
        # Only the kill's own aftermath: a burst later in the period is not this kill's peak.
        after = [(t, v) for t, v in pending if killed <= t < min(until, killed + 2 * RECOVERY_LIMIT)]
        back = _back_after(after, threshold)
        peak = max((v for _, v in after), default=0.0)
        peaks.append(peak)
        # Samples over the threshold once back (a burst of the harness, or a second rebalance).
        relapses = sum(1 for t, v in after if back is not None and t > back and v > threshold)
        rows.append(
            f"{statistics.median(before) if before else float('nan'):.0f}/{peak:.0f}/"
            f"{'never' if back is None else f'{back - killed:.1f}'}/{relapses}"
        )
        figures.require(
            back is not None and back - killed <= RECOVERY_LIMIT,
            f"pending not back to <= {threshold:.0f} within {RECOVERY_LIMIT:g} s of kill {index + 1}",
        )
    figures.require(
        bool(peaks) and all(p > threshold for p in peaks),
        f"a kill did not raise pending above {threshold:.0f}: that fault did not bite",
    )
    key = (
        f"pending per kill: median 30 s before / peak / s until back <= {threshold:.0f} / samples over later"
    )
    figures.notes[key] = rows
    values = [v for _, v in pending]
    if values:
        figures.notes["pending over the run: median / max"] = (
            f"{statistics.median(values):.0f} / {max(values):.0f}"
        )


def _back_after(after: list[tuple[float, float]], threshold: float) -> float | None:
    """When, after its peak, the series first stays at most ``threshold`` for `CALM_SAMPLES` samples."""
    if not after:
        return None
    peak = max(range(len(after)), key=lambda i: after[i][1])
    calm = 0
    for index in range(peak, len(after)):
        calm = calm + 1 if after[index][1] <= threshold else 0
        if calm == CALM_SAMPLES:
            return after[index - CALM_SAMPLES + 1][0]
    return None


def _memory_figures(
    figures: Figures, memory: RssWatch, long_lived: list[str], victims: list[str], after: float
) -> None:
    """Slopes of the long-lived processes after the warm-up; each killed incarnation's last RSS."""
    every = round(KILL_EVERY / RSS_EVERY)
    for name in long_lived:
        series = memory.incarnations(name)[0]
        figures.notes[f"RSS {name} every {KILL_EVERY / 60:g} min (MiB)"] = [
            round(m, 1) for _, m in series[::every]
        ]
        fit = [p for p in series if p[0] >= after]
        fitted, (early, late) = trend(fit), halves(fit)
        slopes = (
            "" if early is None or late is None else f"; halves {early.slope:+.2f} / {late.slope:+.2f} MiB/h"
        )
        span = series[-1][0] - after
        judged = "" if span >= MIN_FIT else f" (over {span / 60:.1f} min < {MIN_FIT / 60:g}: not judged)"
        figures.notes[f"RSS slope {name}"] = f"{fitted or 'too few samples'}{slopes}{judged}"
        figures.require(
            span < MIN_FIT
            or (early is not None and late is not None and min(early.slope, late.slope) < RSS_SLOPE_LIMIT),
            f"{name} RSS grows in both halves{slopes} (limit {RSS_SLOPE_LIMIT:g} MiB/h)",
        )
    for name in victims:
        figures.notes[f"RSS of {name} incarnations at their end (MiB)"] = [
            round(series[-1][1], 1) for series in memory.incarnations(name)
        ]
    harness = [m for _, m in memory.incarnations("harness")[0]]
    figures.notes["harness RSS first / max during the load (MiB)"] = f"{harness[0]:.0f} / {max(harness):.0f}"


SCENARIOS = [
    Scenario(
        "soak-faults",
        "triple",
        False,
        f"{MINUTES_ENV} (30) min at {RATE_ENV} (70 % of the rate the topology sustains) after "
        f"finding that rate and a 2 min ramp; 2 gateways, 3 workers, 1 call in {LATE_EVERY} late; "
        f"SIGKILL + restart worker1 or worker2 every {KILL_EVERY / 60:g} min",
        soak_faults,
        long=True,
    )
]

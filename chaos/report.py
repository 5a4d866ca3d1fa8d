"""Per-scenario figures, the invariants every scenario must keep, and the printer."""

from __future__ import annotations

import collections
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from chaos.load import Outcome

DEADLINE_SLACK = 0.100
"""No HTTP call may be answered later than its deadline plus this."""


@dataclass
class Figures:
    """What one scenario measured; ``violations`` lists broken invariants (empty = pass)."""

    name: str
    injected: str
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    """Count per HTTP status (0 = no HTTP answer: connection refused or reset)."""
    cross_delivered: int = 0
    refusals_without_retry_after: int = 0
    refused_but_executed: int = 0
    """429/503 answers ("definitely not sent, safe to retry") whose request a handler ran anyway."""
    lost_acknowledged: int = 0
    duplicate_effects: int = 0
    redelivered: int = 0
    worst_past_deadline: float = 0.0
    """Caller-side: response time minus the requested wait, worst call."""
    worst_past_deadline_net: float = 0.0
    """The same less the harness's own event-loop stalls during that call."""
    worst_past_deadline_own: float | None = None
    """What the gateway itself owes, which the invariant judges: of the calls late by more than
    the slack net of harness stalls, the worst overrun less the larger of the harness's stalls
    and the answering gateway's waits for a CPU during it (`add_cpu_waits`). None when no call
    was that late or the gateways were not watched: then the net figure is judged."""
    late_calls: int = 0
    """Calls answered more than DEADLINE_SLACK past their deadline (caller-side)."""
    p50_ok: float = 0.0
    p99_ok: float = 0.0
    harness_loop_lag: float = 0.0
    """Worst lag of the load generator's own event loop: the harness's share of response times."""
    pending_after: list[float] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)
    """Error answers by "status: detail", to tell e.g. a fast 503 (unreachable) from a failed produce."""
    notes: dict[str, object] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    windows: list[tuple[str, float, float]] = field(default_factory=list)
    """Fault windows ``(label, start, end)`` in `time.perf_counter` time, shaded on the timeline plot."""
    timeline: list[tuple[float, float, int]] = field(default_factory=list, repr=False)
    """``(sent_at, elapsed, status)`` of every call, for the timeline plot (not written to JSON)."""

    def mark(self, label: str, start: float) -> None:
        """Record a fault window from ``start`` (`time.perf_counter`) until now."""
        self.windows.append((label, start, time.perf_counter()))

    def add_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Fold the caller-side view of a load into the figures."""
        outcomes = list(outcomes)
        self.sent += len(outcomes)
        self.timeline.extend((o.sent_at, o.elapsed, o.status) for o in outcomes)
        for status, count in collections.Counter(o.status for o in outcomes).items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.cross_delivered += sum(1 for o in outcomes if o.own_reply is False)
        for outcome in outcomes:
            if outcome.status >= 400 or outcome.detail:
                cause = f"{outcome.status}: {outcome.detail}"
                self.causes[cause] = self.causes.get(cause, 0) + 1
        self.refusals_without_retry_after += sum(
            1 for o in outcomes if o.status in (429, 503) and not o.retry_after
        )
        if outcomes:
            self.worst_past_deadline = max(self.worst_past_deadline, *(o.past_deadline for o in outcomes))
            self.worst_past_deadline_net = max(
                self.worst_past_deadline_net, *(o.past_deadline_net for o in outcomes)
            )
        self.late_calls += sum(1 for o in outcomes if o.past_deadline > DEADLINE_SLACK)
        ok = sorted(o.elapsed for o in outcomes if 200 <= o.status < 300)
        if len(ok) >= 2:
            self.p50_ok = statistics.median(ok)
            self.p99_ok = statistics.quantiles(ok, n=100)[98]

    def add_cpu_waits(self, late: list[Outcome], waits: list[float]) -> None:
        """Charge late calls with what the gateway that answered owes: the overrun less the larger
        of the harness's stalls and the gateway's waits for a CPU during it. Not both: one
        starved machine causes both at once, and subtracting their sum could excuse it twice."""
        if not late:
            return
        own = max(o.past_deadline - max(o.harness_lag, w) for o, w in zip(late, waits, strict=True))
        self.worst_past_deadline_own = max(own, self.worst_past_deadline_own or own)
        worst = max(range(len(late)), key=lambda i: late[i].past_deadline_net)
        self.notes["late calls (net > 100 ms): count; worst overrun / gateway CPU wait in it"] = (
            f"{len(late)}; {late[worst].past_deadline_net * 1000:.0f} ms / {waits[worst] * 1000:.0f} ms"
        )
        self.notes["late calls whose overrun is at least half gateway CPU wait"] = sum(
            1 for o, w in zip(late, waits, strict=True) if w >= 0.5 * o.past_deadline_net
        )

    def require(self, condition: bool, violation: str) -> None:
        """Record ``violation`` unless ``condition`` holds."""
        if not condition:
            self.violations.append(violation)

    def check_invariants(self) -> None:
        """The four invariants of every scenario."""
        self.require(self.cross_delivered == 0, f"{self.cross_delivered} cross-delivered replies")
        # The raw figure is reported as measured; a call counts against the gateway for its
        # lateness less the harness's own stalls or, if longer, the gateway's waits for a CPU
        # (two shared cores: the machine's share, not the gateway's logic).
        own = (
            self.worst_past_deadline_net
            if self.worst_past_deadline_own is None
            else self.worst_past_deadline_own
        )
        self.require(
            own <= DEADLINE_SLACK,
            f"answered {own * 1000:.0f} ms past a deadline net of harness stalls or gateway CPU waits "
            f"({self.worst_past_deadline_net * 1000:.0f} ms net of harness stalls, "
            f"{self.worst_past_deadline * 1000:.0f} ms raw; limit 100 ms)",
        )
        self.require(not self.crashes, f"process crashes: {self.crashes}")
        self.require(
            self.refused_but_executed == 0,
            f"{self.refused_but_executed} requests answered 429/503 (definite) were executed anyway",
        )
        self.require(
            self.refusals_without_retry_after == 0,
            f"{self.refusals_without_retry_after} 429/503 answers without Retry-After",
        )
        self.require(all(p == 0 for p in self.pending_after), f"pending map not empty: {self.pending_after}")

    @property
    def passed(self) -> bool:
        """No invariant or scenario-specific check broken."""
        return not self.violations


def render(figures: Figures) -> str:
    """A short human-readable block for one scenario."""
    statuses = ", ".join(f"{'conn-error' if s == 0 else s}: {n}" for s, n in sorted(figures.statuses.items()))
    lines = [
        f"== {figures.name}: {'PASS' if figures.passed else 'FAIL'}",
        f"   injected: {figures.injected}",
        f"   sent {figures.sent}; statuses {{{statuses}}}",
        f"   cross-delivered {figures.cross_delivered}; lost acknowledged {figures.lost_acknowledged}; "
        f"duplicate side effects {figures.duplicate_effects}; redelivered executions {figures.redelivered}; "
        f"429/503 yet executed {figures.refused_but_executed}",
        f"   worst past deadline {figures.worst_past_deadline * 1000:+.0f} ms raw, "
        f"{figures.worst_past_deadline_net * 1000:+.0f} ms net of harness stalls"
        + (
            ""
            if figures.worst_past_deadline_own is None
            else f", {figures.worst_past_deadline_own * 1000:+.0f} ms net of those or gateway CPU waits"
        )
        + f"; {figures.late_calls} calls > +100 ms raw",
        f"   "
        f"2xx p50 {figures.p50_ok * 1000:.0f} ms, p99 {figures.p99_ok * 1000:.0f} ms; "
        f"harness loop lag {figures.harness_loop_lag * 1000:.0f} ms",
        f"   pending after run {figures.pending_after}; crashes {figures.crashes or 'none'}",
    ]
    lines.extend(f"   {n:>5} x {cause}" for cause, n in sorted(figures.causes.items(), key=lambda c: -c[1]))
    lines.extend(f"   {key}: {value}" for key, value in figures.notes.items())
    lines.extend(f"   VIOLATION: {violation}" for violation in figures.violations)
    return "\n".join(lines)


def summary(all_figures: list[Figures]) -> str:
    """One line per scenario, for the end of a run."""
    width = max((len(f.name) for f in all_figures), default=10)
    rows = [
        f"{f.name:<{width}}  {'PASS' if f.passed else 'FAIL'}  sent={f.sent:<5} "
        f"2xx={sum(n for s, n in f.statuses.items() if 200 <= s < 300):<5} "
        f"past_deadline raw={f.worst_past_deadline * 1000:+.0f}ms "
        f"net={f.worst_past_deadline_net * 1000:+.0f}ms"
        for f in all_figures
    ]
    return "\n".join(["== summary", *rows])

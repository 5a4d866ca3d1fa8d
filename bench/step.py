"""`Step`: what one measured run of one load shape against one target produced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Step:
    """Figures of one step; latencies in milliseconds, CPU in microseconds per request."""

    target: str
    """``B1`` (HTTP echo), ``B2`` (Kafka ping-pong) or ``S`` (the full system)."""
    mode: str
    """``open`` (fixed rate, latency from the intended send time), ``closed`` or ``one-in-flight``."""
    offered_rate: float | None
    """Requests per second asked for; None for closed loops."""
    concurrency: int
    """Connections (HTTP) or requests in flight (Kafka)."""
    seconds: float
    """Length of the measured window."""
    sent: int = 0
    ok: int = 0
    errors: int = 0
    """Wrong status, wrong body, broken connection."""
    timeouts: int = 0
    achieved_rate: float = 0.0
    """Correct replies per second over the measured window."""
    latency_ms: dict[str, float] = field(default_factory=dict)
    send_lag_ms: dict[str, float] = field(default_factory=dict)
    """Open loop: intended send time to actual send (generator clock, GIL, waiting for a free
    connection). Already inside ``latency_ms``; large values mean the generator, not the
    server, fell behind."""
    coordinated_omission: bool = False
    """True for closed loops: their latency hides queueing and is not a latency figure."""
    cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    switches_per_request: dict[str, float] = field(default_factory=dict)
    """Context switches per request of each process on the path (thread hand-overs)."""
    cpu_cores: dict[str, float] = field(default_factory=dict)
    """Share of one core per process over the window."""
    host_cores: dict[str, float] = field(default_factory=dict)
    """Cores the host took over the window: ``steal``, given to other guests by the hypervisor.
    Not charged to any target; high values mark a step measured in noise."""
    pending_after: int | None = None
    """The gateway's pending-map gauge once the step had finished (S only)."""
    notes: list[str] = field(default_factory=list)

    @property
    def error_ratio(self) -> float:
        """Errors and timeouts over requests sent."""
        return (self.errors + self.timeouts) / self.sent if self.sent else 0.0

    def healthy(self, slo_p99_ms: float, min_rate_ratio: float = 0.98) -> bool:
        """No errors, p99 within the SLO and the offered rate achieved."""
        if not self.latency_ms or self.errors or self.timeouts:
            return False
        if self.offered_rate and self.achieved_rate < min_rate_ratio * self.offered_rate:
            return False
        return self.latency_ms["p99"] <= slo_p99_ms

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "error_ratio": round(self.error_ratio, 6)}

    def label(self) -> str:
        """Short human name, e.g. ``S open 500/s``."""
        if self.offered_rate:
            return f"{self.target} {self.mode} {self.offered_rate:g}/s"
        return f"{self.target} {self.mode} x{self.concurrency}"

    def brief(self) -> str:
        """One line of figures, e.g. ``498/s ok=4980 err=0 to=0 p50=3.1 p99=9.8 ms cpu=410 µs``."""
        latency, cpu = self.latency_ms, self.cpu_us_per_request.get("total")
        return (
            f"{self.achieved_rate:.0f}/s ok={self.ok} err={self.errors} to={self.timeouts} "
            f"p50={latency.get('p50')} p99={latency.get('p99')} ms"
            + ("" if cpu is None else f" cpu={cpu} µs")
            + ("" if not self.host_cores else f" steal={self.host_cores['steal']} cores")
        )

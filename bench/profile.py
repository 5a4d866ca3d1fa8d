"""`Profile`: how long and how hard a run is (``full`` for ``make bench``, ``quick``, ``smoke``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """Durations in seconds, rates in requests per second."""

    name: str
    low_rate: float
    """Open-loop rate of the low-load comparison (well under 10 % of the knee)."""
    low_seconds: float
    repeats: int
    """Rounds of (B1, B2, S) low-load and closed-loop steps, interleaved; medians are reported."""
    closed_seconds: float
    warmup: float
    sweep_fractions: tuple[float, ...]
    """Open-loop rates of the S sweep, as fractions of S's closed-loop maximum."""
    sweep_seconds: float
    bisect_steps: int
    """Extra steps between the last healthy and the first unhealthy sweep rate (either sweep)."""
    sweep_rounds: int
    """Rounds of (S sweep, Kafka floor sweep), the order alternating; the target is their median."""
    side_by_side_fractions: tuple[float, ...]
    """Open-loop rates of the baselines side by side (B1 ∥ B2), as fractions of the CPU bound."""
    stage_seconds: float
    idle_seconds: float = 3.0
    """Window over which idle CPU per process is measured after the warm-up."""
    closed_connections: int = 32
    pipeline_window: int = 32
    slo_p99_ms: float = 25.0


PROFILES = {
    # About 11-12 minutes on two shared cores, broker start-up included (estimate: the last run
    # with 12-15 s steps took 12.5 minutes, before the side-by-side sweep added 1-2 minutes).
    "full": Profile(
        name="full",
        low_rate=100,
        low_seconds=10,
        repeats=3,
        closed_seconds=8,
        warmup=2,
        sweep_fractions=(0.1, 0.25, 0.4, 0.55, 0.7, 0.8, 0.9, 1.0, 1.15),
        sweep_seconds=10,
        bisect_steps=2,
        sweep_rounds=3,
        # Up to the bound itself, where the pair must saturate: a knee to bisect below.
        side_by_side_fractions=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
        stage_seconds=10,
    ),
    # About 4 minutes: the same steps, shorter and fewer.
    "quick": Profile(
        name="quick",
        low_rate=100,
        low_seconds=6,
        repeats=2,
        closed_seconds=5,
        warmup=1.5,
        sweep_fractions=(0.1, 0.4, 0.7, 0.9, 1.1),
        sweep_seconds=6,
        bisect_steps=1,
        sweep_rounds=1,
        side_by_side_fractions=(0.1, 0.25, 0.4, 0.6, 0.8),
        stage_seconds=4,
    ),
    # Seconds: proves the harness works end to end (tests/bench), figures are not meaningful.
    "smoke": Profile(
        name="smoke",
        low_rate=50,
        low_seconds=2,
        repeats=1,
        closed_seconds=1.5,
        warmup=0.5,
        sweep_fractions=(0.2,),
        sweep_seconds=2,
        bisect_steps=0,
        sweep_rounds=2,  # two, so the rounds and their medians are exercised
        side_by_side_fractions=(0.02,),
        stage_seconds=2,
        idle_seconds=1.0,
        closed_connections=8,
        pipeline_window=8,
    ),
}

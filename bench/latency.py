"""`Latencies`: raw samples collected on the hot path, summarised through an HdrHistogram."""

from __future__ import annotations

from array import array
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

# Recorded in microseconds: 1 µs to 60 s with 3 significant digits (0.1 % quantisation).
LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p99": 99.0, "p99_9": 99.9}


class Latencies:
    """Latency samples in nanoseconds.

    The hot path only appends to an ``array`` (tens of nanoseconds); the pure-Python
    HdrHistogram is filled once, in `summary`, so it costs the load generator nothing
    while requests are in flight.
    """

    def __init__(self) -> None:
        self._samples = array("q")

    def __len__(self) -> int:
        return len(self._samples)

    def add(self, nanoseconds: int) -> None:
        """Record one latency."""
        self._samples.append(nanoseconds)

    def extend(self, other: Latencies) -> None:
        """Merge another set of samples into this one."""
        self._samples.extend(other._samples)

    def histogram(self) -> Any:
        """The samples as an ``hdrh`` HdrHistogram of microseconds."""
        histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
        for sample in self._samples:
            histogram.record_value(min(max(sample // 1000, LOWEST_US), HIGHEST_US))
        return histogram

    def summary(self) -> dict[str, float]:
        """p50/p90/p99/p99.9/max/mean in milliseconds; empty when nothing was recorded."""
        if not self._samples:
            return {}
        histogram = self.histogram()
        values = {name: histogram.get_value_at_percentile(p) / 1000 for name, p in PERCENTILES.items()}
        values["max"] = histogram.get_max_value() / 1000
        values["mean"] = histogram.get_mean_value() / 1000
        return {name: round(value, 3) for name, value in values.items()}

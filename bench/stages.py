"""Stage breakdown from the gateway's ``Server-Timing`` answers (``GATEWAY_TIMING=true``).

The gateway and worker stamp each request on its way (`gateway.timing`): HTTP in ->
produced -> worker in -> worker out -> reply fetched -> reply routed -> HTTP out,
in microseconds on one host's clock. The load generator adds what lies outside the
gateway: end-to-end latency minus the gateway's ``total`` is the client, the loopback
network and uvicorn's parsing and writing (``outside``).
"""

from __future__ import annotations

import statistics

from gateway.timing import SEGMENTS as GATEWAY_SEGMENTS

Trace = list[tuple[float, bytes]]
"""Per request: end-to-end milliseconds and the raw ``Server-Timing`` value."""

SEGMENTS = (*(name for name, _, _ in GATEWAY_SEGMENTS), "outside")


def server_timing(value: bytes) -> dict[str, float]:
    """``name -> milliseconds`` from a ``Server-Timing`` value (``name;dur=ms, ...``)."""
    found: dict[str, float] = {}
    for metric in value.decode("latin-1").split(","):
        name, _, params = metric.strip().partition(";")
        for param in params.split(";"):
            key, _, number = param.strip().partition("=")
            if key == "dur":
                found[name] = float(number)
    return found


def timed(trace: Trace) -> list[dict[str, float]]:
    """The requests with every segment: milliseconds per `SEGMENTS` name and ``end-to-end``."""
    rows = []
    for end_to_end, value in trace:
        durations = server_timing(value)
        if all(name in durations for name in SEGMENTS[:-1]):
            rows.append({**durations, "outside": end_to_end - durations["total"], "end-to-end": end_to_end})
    return rows


def breakdown(trace: Trace) -> dict[str, object]:
    """Median, p90 and mean of each segment in milliseconds, over requests with every segment."""
    rows = timed(trace)
    result: dict[str, object] = {"requests": len(rows)}
    for name in SEGMENTS:
        values = [row[name] for row in rows]
        if len(values) >= 2:
            result[name] = {
                "p50": round(statistics.median(values), 3),
                "p90": round(statistics.quantiles(values, n=10)[-1], 3),
                "mean": round(statistics.fmean(values), 3),
            }
    return result

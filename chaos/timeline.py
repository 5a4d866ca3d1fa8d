"""A scenario's calls over time: rate by outcome and 2xx latency per second, fault windows shaded."""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import numpy as np

from chaos.report import Figures

mpl.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

OUTCOMES = ("2xx", "504", "503/429", "other errors")
"""The rate panel's series, in legend order; "other errors" includes connection errors (status 0)."""
_COLOURS = {"2xx": "tab:green", "504": "tab:red", "503/429": "tab:orange", "other errors": "tab:grey"}


@dataclass(frozen=True)
class Seconds:
    """Per-second figures of a timeline; bucket ``i`` covers ``[i, i + 1)`` s after the first call."""

    origin: float
    """`time.perf_counter` of the first call: the x axis' zero."""
    completed: dict[str, list[int]]
    """Calls completed (sent_at + elapsed) in each bucket, by outcome (`OUTCOMES`)."""
    p50_ms: list[float | None]
    """Median latency of the 2xx calls sent in each bucket; None where there were none."""
    p99_ms: list[float | None]
    """Nearest-rank p99 of the same calls."""


def per_second(timeline: Sequence[tuple[float, float, int]]) -> Seconds:
    """Bucket a non-empty ``(sent_at, elapsed, status)`` timeline by second.

    Rates count a call when it completes; latency is charged to the second a call was sent, so a
    stall's slow answers line up with the fault window that caused them instead of its end.
    """
    calls = np.fromiter(itertools.chain.from_iterable(timeline), np.float64, 3 * len(timeline))
    sent, elapsed, status = calls.reshape(-1, 3).T
    status = status.astype(np.int64)
    origin = float(sent.min())
    done = np.floor(sent + elapsed - origin).astype(np.int64)
    count = int(done.max()) + 1
    ok = (status >= 200) & (status < 300)
    masks = {
        "2xx": ok,
        "504": status == 504,
        "503/429": (status == 503) | (status == 429),
    }
    masks["other errors"] = ~(masks["2xx"] | masks["504"] | masks["503/429"])
    completed = {name: np.bincount(done[masks[name]], minlength=count).tolist() for name in OUTCOMES}
    # Group the 2xx latencies by send second with one sort, then a partition per bucket: the
    # timeline is already nearly in send order, which the stable sort (timsort) runs through fast.
    started = np.floor(sent[ok] - origin).astype(np.int64)
    order = np.argsort(started, kind="stable")
    latencies = elapsed[ok][order] * 1000
    ends = np.cumsum(np.bincount(started, minlength=count))
    p50: list[float | None] = [None] * count
    p99: list[float | None] = [None] * count
    begin = 0
    for second, end in enumerate(ends.tolist()):
        if end > begin:
            p50[second], p99[second] = (
                float(v) for v in np.percentile(latencies[begin:end], (50, 99), method="inverted_cdf")
            )
        begin = end
    return Seconds(origin, completed, p50, p99)


def plot(figures: Figures, path: Path) -> None:
    """Write ``figures.timeline`` (non-empty) as a PNG: rate by outcome above, 2xx latency below."""
    seconds = per_second(figures.timeline)
    count = len(seconds.p99_ms)
    figure, (rate, latency) = plt.subplots(2, 1, sharex=True, figsize=(12, 7))
    edges = np.arange(count + 1)
    for name in OUTCOMES:
        # Separate lines, not stacked: a handful of errors stays visible beside thousands of 2xx.
        series = seconds.completed[name]
        rate.step(
            edges,
            [*series, series[-1]],  # the last value again, so the last second gets its step too
            where="post",
            color=_COLOURS[name],
            label=f"{name} ({sum(series)})",
            linewidth=1,
        )
    middles = edges[:-1] + 0.5
    for name, values, style in (("p99", seconds.p99_ms, "-"), ("p50", seconds.p50_ms, ":")):
        # None becomes NaN, which breaks the line: a second without a 2xx call has no point.
        latency.plot(
            middles, np.array(values, dtype=np.float64), style, marker=".", markersize=3, label=f"2xx {name}"
        )
    shades = mpl.colormaps["Pastel1"]
    colours: dict[str, tuple[float, float, float, float]] = {}
    shown: set[str] = set()
    for label, start, end in figures.windows:
        left, right = start - seconds.origin, end - seconds.origin
        # The same fault twice keeps one colour and one legend entry; one the axis clips away
        # entirely still appears in the legend, saying so.
        colour = colours.setdefault(label, shades(len(colours) % shades.N))
        entry = f"fault: {label}" + (" (outside the calls)" if right < 0 or left > count else "")
        for axes in (rate, latency):
            axes.axvspan(
                left, right, color=colour, alpha=0.6, label="_" if entry in shown else entry, zorder=0
            )
        shown.add(entry)
    rate.set_xlim(0, count)  # windows before or after the calls must not stretch the axis
    rate.set_ylabel("calls completed per second")
    rate.set_ylim(bottom=0)
    if any(p99 for p99 in seconds.p99_ms):
        latency.set_yscale("log")
    else:  # log scaling raises without a positive value to show
        latency.text(0.5, 0.5, "no 2xx calls", transform=latency.transAxes, ha="center")
    latency.set_ylabel("2xx latency by send second (ms)")
    latency.set_xlabel("seconds since the first call")
    for axes in (rate, latency):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves
    figure.suptitle(textwrap.fill(f"{figures.name}: {figures.injected}", 110), fontsize="medium")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""``python -m bench.tail``: where the slowest calls lose their time, at an open-loop rate.

The sustained rate ends where p99 passes 25 ms. This says which stage the slowest calls spend
it in: the stack as ``python -m bench`` starts it, a gateway with timing on (`Stack.timed_gateway`;
the main gateway stays idle), open loop at each ``--rate``, and per stage its p50 and p99 and
its mean over the calls at or above the end-to-end p99 (``Server-Timing`` stamps, `bench.stages`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from .loadgen import LoadGenerator, connections_for, new_loop
from .stack import ServerOptions, Stack
from .stages import SEGMENTS, Trace, timed
from .threads import CONNECTIONS


def main(argv: list[str] | None = None) -> int:
    """Load each rate in turn and print one table per rate."""
    args = _parser().parse_args(argv)
    with (
        Stack(ServerOptions()) as stack,
        asyncio.Runner(loop_factory=new_loop) as runner,
        stack.timed_gateway() as (port, _),
    ):
        load = LoadGenerator("127.0.0.1", port, headers=stack.options.request_headers)
        runner.run(load.closed_loop(CONNECTIONS, args.warmup, 0))
        for rate in args.rate:
            trace: Trace = []
            step = runner.run(load.open_loop(rate, args.seconds, 2.0, connections_for(rate), trace))
            print(f"\nS open loop {rate:g}/s: {step.brief()}")
            print(table(trace))
    return 0


def table(trace: Trace) -> str:
    """Per stage: p50, p99, and the mean over the calls at or above the end-to-end p99 (ms)."""
    rows = timed(trace)
    if len(rows) < 100:
        return f"{len(rows)} timed calls: too few for a p99"
    cut = statistics.quantiles([row["end-to-end"] for row in rows], n=100)[-1]
    slowest = [row for row in rows if row["end-to-end"] >= cut]  # never empty, even with ties
    lines = [
        f"{len(rows)} timed calls, {len(slowest)} at or above the p99 ({cut:.1f} ms)",
        "| stage | p50 ms | p99 ms | mean of the slowest 1 % ms |",
        "|---|---|---|---|",
    ]
    for name in (*SEGMENTS, "end-to-end"):
        values = [row[name] for row in rows]
        p99 = statistics.quantiles(values, n=100)[-1]
        mean = statistics.fmean(row[name] for row in slowest)
        lines.append(f"| {name} | {statistics.median(values):.2f} | {p99:.2f} | {mean:.2f} |")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.tail", description=__doc__)
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[500.0, 1000.0, 1300.0], help="open-loop rates"
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per rate")
    parser.add_argument("--warmup", type=float, default=10.0, help="closed-loop warm-up seconds")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench.threads``: CPU per request of each thread of the gateway and the worker.

Where a process's CPU goes, thread by thread: the event loop, librdkafka's threads and the
gateway's reply and delivery-report threads. Starts the stack as ``python -m bench`` does,
warms it up, then loads S closed loop (32 connections) or open loop at ``--rate`` and
prints CPU-µs and context switches per request for every thread that used any. Run two
checkouts one after the other (``PYTHONPATH`` picks the code) for an A/B of a change.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from .cpu import CpuMeter, CpuSample, thread_sample
from .loadgen import LoadGenerator, connections_for, new_loop
from .stack import ServerOptions, Stack

PROCESSES = ("gateway", "worker")
CONNECTIONS = 32


def main(argv: list[str] | None = None) -> int:
    """Run one load step and print the per-thread table."""
    args = _parser().parse_args(argv)
    with Stack(ServerOptions()) as stack, asyncio.Runner(loop_factory=new_loop) as runner:
        load = LoadGenerator("127.0.0.1", stack.gateway_port)
        runner.run(load.closed_loop(CONNECTIONS, args.warmup, 0))
        pids = {name: stack.pids[name] for name in PROCESSES}
        meter = CpuMeter({**stack.pids, "client": os.getpid()})
        before = meter.sample(), {name: thread_sample(pid) for name, pid in pids.items()}
        sent = load.exchanges
        if args.rate:
            step = runner.run(load.open_loop(args.rate, args.seconds, 0, connections_for(args.rate)))
        else:
            step = runner.run(load.closed_loop(CONNECTIONS, args.seconds, 0))
        after = meter.sample(), {name: thread_sample(pid) for name, pid in pids.items()}
        requests = load.exchanges - sent
    step.target = "S"
    p50, p99 = step.latency_ms.get("p50"), step.latency_ms.get("p99")
    print(f"S {step.label()}: {step.achieved_rate:g}/s, p50 {p50} ms, p99 {p99} ms")
    print(f"processes, CPU-µs per request: {CpuMeter.per_request(before[0], after[0], requests)}")
    print("| process | thread | CPU-µs per request | switches per request |")
    print("|---|---|---|---|")
    for name in PROCESSES:
        for row in _rows(before[1][name], after[1][name], requests):
            print(f"| {name} | {' | '.join(row)} |")
    return 0


def _rows(before: CpuSample, after: CpuSample, requests: int) -> list[tuple[str, str, str]]:
    """Threads that used CPU or switched, busiest first."""
    cpu = CpuMeter.per_request(before, after, requests)
    switches = CpuMeter.switches_per_request(before, after, requests)
    cpu.pop("total", None)
    busy = [name for name in cpu if cpu[name] > 0 or switches.get(name, 0) > 0]
    busy.sort(key=lambda name: cpu[name], reverse=True)
    return [(name, f"{cpu[name]:g}", f"{switches.get(name, 0):g}") for name in busy]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__)
    parser.add_argument("--rate", type=float, default=0.0, help="open-loop rate; 0: closed loop")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="closed-loop warm-up seconds")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

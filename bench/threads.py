"""``python -m bench.threads``: CPU per request of each thread of the gateway and the worker.

Where a process's CPU goes, thread by thread: the event loop, librdkafka's threads and the
gateway's reply and delivery-report threads. Starts the stack as ``python -m bench`` does,
warms it up, then loads S closed loop (32 connections) or open loop at ``--rate`` and
prints CPU-µs, context switches and run-queue wait (µs runnable but waiting for a core)
per request for every thread that used any. The load
runs ``--settle`` seconds unmeasured first: for about 20 s after the closed-loop warm-up
every process, the broker most, costs more per request (at 300/s the broker 3,750, 2,520
and then 1,110 µs in three 10 s steps, the gateway 1,050, 870, 710). ``--env``
and ``--worker-env`` add to the gateway's and the worker's environment, for an A/B of a
setting; run two checkouts one after the other (``PYTHONPATH`` picks the code) for one of
a change. ``--floor`` then loads the Kafka floor (FK) the same way, so that S's processes
and the floor's are compared at one rate: a thread hand-off shows as switches per request,
and what it costs a call on a busy host as run-queue wait.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from .cpu import CpuMeter, CpuSample, thread_sample
from .loadgen import LoadGenerator, connections_for, new_loop
from .stack import KAFKA_FLOOR, ServerOptions, Stack, add_environment_option, environment
from .step import Step
from .suite import PATHS

PROCESSES = ("gateway", "worker")
CONNECTIONS = 32


def main(argv: list[str] | None = None) -> int:
    """Run one load step (two with ``--floor``) and print the tables."""
    args = _parser().parse_args(argv)
    options = ServerOptions(gateway_env=environment(args.env), worker_env=environment(args.worker_env))
    with Stack(options) as stack, asyncio.Runner(loop_factory=new_loop) as runner:
        load = LoadGenerator("127.0.0.1", stack.gateway_port)

        def http(seconds: float) -> Step:
            if args.rate:
                return runner.run(load.open_loop(args.rate, seconds, 0, connections_for(args.rate)))
            return runner.run(load.closed_loop(CONNECTIONS, seconds, 0))

        runner.run(load.closed_loop(CONNECTIONS, args.warmup, 0))
        http(args.settle)
        pids = {**stack.pids, "client": os.getpid()}
        _print(_measure("S", lambda: http(args.seconds), lambda: load.exchanges, pids, PROCESSES))
        if not args.floor:
            return 0
        with stack.kafka_floor_client() as (client, server):

            def floor(seconds: float) -> Step:
                if args.rate:
                    return client.open_loop(args.rate, seconds, 0, precise=False)
                return client.pipelined(CONNECTIONS, seconds, 0)

            client.pipelined(CONNECTIONS, args.warmup, 0)
            floor(args.settle)
            pids[KAFKA_FLOOR] = server
            paths = {name: pids[name] for name in PATHS["FK"]}
            _print(
                _measure("FK", lambda: floor(args.seconds), lambda: client.exchanges, paths, (KAFKA_FLOOR,))
            )
    return 0


@dataclass(frozen=True)
class _Measured:
    """One step and what its processes and their threads used, per request."""

    step: Step
    processes: dict[str, tuple[float, float, float]]
    """Process name (and ``total``): (CPU-µs, switches, run-queue wait µs) per request."""
    threads: dict[str, list[tuple[str, ...]]]
    """Process name: its threads' rows, busiest first."""


def _measure(
    target: str,
    run: Callable[[], Step],
    exchanges: Callable[[], int],
    pids: dict[str, int],
    detailed: tuple[str, ...],
) -> _Measured:
    """``run``, the step of ``target``, sampling ``pids``' processes and the threads of ``detailed``."""
    meter = CpuMeter(pids)
    before = meter.sample(), {name: thread_sample(pids[name]) for name in detailed}
    sent = exchanges()
    step = run()
    step.target = target
    after = meter.sample(), {name: thread_sample(pids[name]) for name in detailed}
    requests = exchanges() - sent
    cpu = CpuMeter.per_request(before[0], after[0], requests)
    switches = CpuMeter.switches_per_request(before[0], after[0], requests)
    waited = CpuMeter.waited_per_request(before[0], after[0], requests)
    waited["total"] = round(sum(waited.values()), 1)
    processes = {name: (cpu[name], switches.get(name, 0.0), waited.get(name, 0.0)) for name in cpu}
    threads = {name: _rows(before[1][name], after[1][name], requests) for name in detailed}
    return _Measured(step, processes, threads)


def _print(measured: _Measured) -> None:
    step = measured.step
    p50, p99 = step.latency_ms.get("p50"), step.latency_ms.get("p99")
    print(f"{step.label()}: {step.achieved_rate:g}/s, p50 {p50} ms, p99 {p99} ms")
    print("| process | CPU-µs per request | switches per request | run-queue wait µs per request |")
    print("|---|---|---|---|")
    for name, (cpu, switches, waited) in measured.processes.items():
        print(f"| {name} | {cpu:g} | {'' if name == 'total' else f'{switches:g}'} | {waited:g} |")
    print("| process | thread | CPU-µs per request | switches per request | run-queue wait µs per request |")
    print("|---|---|---|---|---|")
    for name, rows in measured.threads.items():
        for row in rows:
            print(f"| {name} | {' | '.join(row)} |")
    print()


def _rows(before: CpuSample, after: CpuSample, requests: int) -> list[tuple[str, ...]]:
    """Threads that used CPU or switched, busiest first."""
    cpu = CpuMeter.per_request(before, after, requests)
    switches = CpuMeter.switches_per_request(before, after, requests)
    waited = CpuMeter.waited_per_request(before, after, requests)
    cpu.pop("total", None)
    busy = [name for name in cpu if cpu[name] > 0 or switches.get(name, 0) > 0]
    busy.sort(key=lambda name: cpu[name], reverse=True)
    return [
        (name, f"{cpu[name]:g}", f"{switches.get(name, 0):g}", f"{waited.get(name, 0):g}") for name in busy
    ]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__)
    parser.add_argument("--rate", type=float, default=0.0, help="open-loop rate; 0: closed loop")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=10.0, help="closed-loop warm-up seconds")
    parser.add_argument(
        "--settle",
        type=float,
        default=20.0,
        help="seconds of the measured load, unmeasured, after the warm-up",
    )
    parser.add_argument(
        "--floor", action="store_true", help="then load the Kafka floor the same way and print its processes"
    )
    add_environment_option(parser, "--env", "the gateway's extra environment")
    add_environment_option(parser, "--worker-env", "the worker's extra environment")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

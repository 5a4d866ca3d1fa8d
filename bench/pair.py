"""``python -m bench.pair``: an A/B of gateway settings with both gateways running at once.

On a shared host, runs minutes apart differ by more than most changes do (docs/PERFORMANCE.md,
"The reply consumer on the loop"). This compares two gateways in the same minutes: the stack as
``python -m bench`` starts it, whose gateway is arm A, and a second gateway (`Stack.second_gateway`)
with ``--env`` added to its environment, arm B, on the same topics, worker and reply partition
(each drops the other's replies as unmatched). Each round loads A and then B, or B and then A
(alternating), open loop at ``--rate`` for ``--seconds``, and the table gives each round's p50,
p99 and gateway CPU per request, the difference B - A per round, and the medians of all of them.
Both gateways run this checkout and share the worker. With ``--worker-env``, arm B also has a
worker of its own (`Stack.second_worker`: its own group and request topic, this checkout,
that environment added), which its gateway alone reaches, and the CPU column is the arm's worker's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
from dataclasses import dataclass

from .cpu import CpuMeter
from .loadgen import LoadGenerator, connections_for, new_loop
from .stack import ServerOptions, Stack, add_environment_option, environment
from .threads import CONNECTIONS

ARMS = ("A", "B")


@dataclass(frozen=True)
class Round:
    """One arm's step of one round: latency in ms, the gateway's CPU in µs per request."""

    number: int
    arm: str
    p50: float
    p99: float
    cpu: float
    failed: int
    """Errors and timeouts."""


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    args = _parser().parse_args(argv)
    env, worker_env = environment(args.env), environment(args.worker_env)
    measured = "worker" if worker_env else "gateway"
    with contextlib.ExitStack() as running:
        stack = running.enter_context(Stack(ServerOptions()))
        runner = running.enter_context(asyncio.Runner(loop_factory=new_loop))
        worker_pid = None
        if worker_env:
            topic, worker_pid = running.enter_context(stack.second_worker(worker_env))
            env = {**env, "GATEWAY_REQUEST_TOPIC": topic}
        port, gateway_pid = running.enter_context(stack.second_gateway(env))
        pids = {"A": stack.pids[measured], "B": gateway_pid if worker_pid is None else worker_pid}
        ports = {"A": stack.gateway_port, "B": port}
        loads = {
            arm: LoadGenerator("127.0.0.1", port, headers=stack.options.request_headers)
            for arm, port in ports.items()
        }
        for load in loads.values():
            runner.run(load.closed_loop(CONNECTIONS, args.warmup, 0))
        rounds: list[Round] = []
        for number in range(args.rounds):
            for arm in ARMS if number % 2 == 0 else ARMS[::-1]:
                load, meter = loads[arm], CpuMeter({measured: pids[arm]})
                before, sent = meter.sample(), load.exchanges
                step = runner.run(load.open_loop(args.rate, args.seconds, 0, connections_for(args.rate)))
                cpu = CpuMeter.per_request(before, meter.sample(), load.exchanges - sent).get(measured, 0.0)
                latency = step.latency_ms
                rounds.append(
                    Round(number, arm, latency["p50"], latency["p99"], cpu, step.errors + step.timeouts)
                )
                print(f"round {number} {arm}: {step.brief()}", flush=True)
    changes = " ".join([*args.env, *(f"worker {item}" for item in args.worker_env)]) or "(as A)"
    print(f"\nB: {changes}; open loop {args.rate:g}/s, {args.seconds:g} s per step; CPU: the {measured}'s")
    print(table(rounds))
    return 0


def table(rounds: list[Round]) -> str:
    """Per round A, B and B - A (p50, p99 in ms; gateway CPU in µs per request), then medians."""
    by_round: dict[int, dict[str, Round]] = {}
    for step in rounds:
        by_round.setdefault(step.number, {})[step.arm] = step
    complete = [arms for _, arms in sorted(by_round.items()) if set(arms) == set(ARMS)]
    lines = [
        "| round | p50 A | p50 B | B - A | p99 A | p99 B | B - A | CPU A | CPU B | B - A | failed A / B |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    figures = [_figures(arms["A"], arms["B"]) for arms in complete]
    for arms, values in zip(complete, figures, strict=True):
        lines.append(f"| {arms['A'].number} | {_cells(values)} | {arms['A'].failed} / {arms['B'].failed} |")
    if complete:
        medians = [statistics.median(column) for column in zip(*figures, strict=True)]
        failed = [sum(arms[arm].failed for arms in complete) for arm in ARMS]
        lines.append(f"| median | {_cells(medians)} | {failed[0]} / {failed[1]} (sum) |")
    return "\n".join(lines)


def _figures(a: Round, b: Round) -> list[float]:
    """A, B and B - A of p50, p99 and CPU."""
    return [a.p50, b.p50, b.p50 - a.p50, a.p99, b.p99, b.p99 - a.p99, a.cpu, b.cpu, b.cpu - a.cpu]


def _cells(values: list[float]) -> str:
    """Six latencies (ms, three decimals), then three CPU figures (µs, one decimal)."""
    return " | ".join(f"{value:.3f}" if index < 6 else f"{value:.1f}" for index, value in enumerate(values))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.pair", description=__doc__)
    add_environment_option(parser, "--env", "gateway B's extra environment")
    add_environment_option(
        parser, "--worker-env", "give arm B a worker of its own with this extra environment"
    )
    parser.add_argument("--rounds", type=int, default=10, help="rounds (each loads A and B once)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per step")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop rate of each step")
    parser.add_argument("--warmup", type=float, default=5.0, help="closed-loop warm-up per gateway")
    return parser


if __name__ == "__main__":
    raise SystemExit(main())

"""Worker faults: SIGKILL and restart, SIGSTOP past the deadline, a stall past max.poll.interval.ms."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx

from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack


async def worker_kill(kafka: Kafka, figures: Figures) -> None:
    """SIGKILL one of two workers at 25 % of the load, restart it at 50 %; two gateways."""
    stack = Stack(kafka, "worker-kill")
    async with closing(stack, figures):
        victim = stack.add_worker()
        stack.add_worker()
        stack.add_gateway()
        stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        load = Load(stack.urls, total=1600, rate=100, concurrency=32, wait=3)

        async def fault() -> None:
            await load.reached(400)
            killed = time.perf_counter()
            await asyncio.to_thread(victim.kill)
            await load.reached(800)
            victim.restart()
            await asyncio.to_thread(victim.wait_ready)
            figures.mark("worker SIGKILLed until ready again", killed)

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        figures.notes["worker expired (skipped) records"] = sum(
            w.metric("rpcworker_expired_total") for w in stack.workers
        )
        _no_loss(figures)


async def worker_pause(kafka: Kafka, figures: Figures) -> None:
    """SIGSTOP one of two workers three times for 4 s (deadline 2 s, under the 6 s session timeout).

    The worker cancels handlers at the deadline and sends nothing for expired requests, so a late
    reply needs one that was produced in time but was still in the producer's queue when the process
    stopped: ``linger.ms=100`` on the victim widens that window to a few replies per stop.
    """
    stack = Stack(kafka, "worker-pause")
    async with closing(stack, figures):
        victim = stack.add_worker({"linger.ms": 100})
        stack.add_worker()
        stack.add_gateway()
        stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        # 50 ms handlers, so a few dozen are in flight in the victim when it stops.
        load = Load(stack.urls, total=2000, rate=100, concurrency=48, wait=2, delay=0.05)

        async def fault() -> None:
            for start in (300, 900, 1500):
                await load.reached(start)
                stopped = time.perf_counter()
                victim.signal(signal.SIGSTOP)
                await asyncio.sleep(4.0)  # the fault's duration, not synchronisation
                victim.signal(signal.SIGCONT)
                figures.mark("worker SIGSTOPped", stopped)

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        late = sum(g.metric("rpcgw_late_replies_total") for g in stack.gateways)
        expired = sum(w.metric("rpcworker_expired_total") for w in stack.workers)
        figures.notes["late replies (rpcgw_late_replies_total)"] = late
        figures.notes["expired records skipped by workers"] = expired
        figures.require(figures.statuses.get(504, 0) > 0, "the pause produced no 504: the fault did not bite")
        figures.require(late > 0, "no late reply reached the gateway, so none was counted")
        _no_loss(figures)


async def worker_stall(kafka: Kafka, figures: Figures) -> None:
    """A worker frozen 15 s holding the GIL: it keeps heartbeating, so only max.poll.interval.ms evicts it."""
    stack = Stack(kafka, "worker-stall")
    async with closing(stack, figures):
        tuned: dict[str, object] = {"max.poll.interval.ms": 7000}
        stack.add_worker(tuned)
        stack.add_worker(tuned)
        gateway = stack.add_gateway()
        stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        # A 10 s deadline outlives eviction (7 s) plus the rebalance: redelivered records still run.
        load = Load(stack.urls, total=2500, rate=100, concurrency=64, wait=10)

        async def fault() -> None:
            await load.reached(300)
            stalled = time.perf_counter()
            async with httpx.AsyncClient(timeout=10) as client:
                response = await client.post(
                    f"{gateway.url}/rpc/chaos.stall", content=b'{"seconds": 15}', headers={"prefer": "wait=1"}
                )
            figures.notes["stall request answered"] = response.status_code
            figures.mark("a worker frozen (GIL held)", stalled)

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        rebalances = sum(w.output(10**7).count("MAX_POLL_EXCEEDED") for w in stack.workers)
        figures.notes["MAX_POLL_EXCEEDED in worker logs"] = rebalances
        figures.notes["late replies (rpcgw_late_replies_total)"] = sum(
            g.metric("rpcgw_late_replies_total") for g in stack.gateways
        )
        figures.require(rebalances > 0, "the stalled worker was not evicted (no MAX_POLL_EXCEEDED)")
        # Records the evicted worker had fetched but not finished are fetched again by the other.
        consumed = sum(w.metric("rpcworker_records_consumed_total") for w in stack.workers)
        figures.notes["records consumed by both workers - requests sent"] = consumed - (load.total + 1)
        figures.require(consumed > load.total + 1, "no record was redelivered after the eviction")
        _no_loss(figures)


def _no_loss(figures: Figures) -> None:
    figures.require(figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost")
    figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")
    figures.require(
        set(figures.statuses) <= {200, 503, 504}, f"unexpected statuses {sorted(figures.statuses)}"
    )


SCENARIOS = [
    Scenario(
        "worker-sigkill", "triple", True, "SIGKILL 1 of 2 workers at 25 %, restart at 50 %", worker_kill
    ),
    Scenario(
        "worker-sigstop",
        "triple",
        False,
        "SIGSTOP 1 of 2 workers 3 x 4 s (deadline 2 s, victim linger.ms=100)",
        worker_pause,
    ),
    Scenario(
        "worker-max-poll",
        "triple",
        False,
        "1 of 2 workers frozen 15 s holding the GIL, max.poll.interval.ms=7000",
        worker_stall,
    ),
]

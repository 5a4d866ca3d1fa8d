"""Gateway faults: one of three replicas SIGKILLed with requests in flight."""

from __future__ import annotations

import asyncio
import collections
import time

from chaos.load import CONNECTION_ERROR, Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack

UNMATCHED = "rpcgw_unmatched_replies_total"


async def replica_kill(kafka: Kafka, figures: Figures) -> None:
    """Three replicas; the victim shares reply partition 1 with a survivor, which must count its orphans."""
    stack = Stack(kafka, "gateway-kill", reply_partitions=2)
    async with closing(stack, figures):
        stack.add_worker()
        stack.add_worker()
        survivor = stack.add_gateway(GATEWAY_REPLY_PARTITION="0")
        sharer = stack.add_gateway(GATEWAY_REPLY_PARTITION="1")
        victim = stack.add_gateway(GATEWAY_REPLY_PARTITION="1")
        await asyncio.to_thread(stack.wait_ready)
        # 200 ms handlers keep ~20 requests in flight at the victim when it dies.
        load = Load(stack.urls, total=2400, rate=120, concurrency=64, wait=3, delay=0.2)
        before_kill: list[float] = []
        killed_at: list[float] = []

        async def fault() -> None:
            await load.reached(1000)
            before_kill.append(await asyncio.to_thread(sharer.metric, UNMATCHED))
            await asyncio.to_thread(victim.kill)
            killed_at.append(time.perf_counter())

        outcomes = await under_fault(load, fault(), stack)
        figures.mark("a gateway replica SIGKILLed (down to the end)", killed_at[0])
        on_victim = [o for o in outcomes if o.target == victim.url]
        on_others = [o for o in outcomes if o.target != victim.url]
        stack.account(figures, load)
        orphans = sharer.metric(UNMATCHED) - before_kill[0]
        cut = [o for o in on_victim if o.status == CONNECTION_ERROR]
        in_flight_lost = sum(1 for o in cut if o.sent_at < killed_at[0])
        figures.notes["victim's callers cut off in flight / refused afterwards"] = (
            f"{in_flight_lost} / {len(cut) - in_flight_lost}"
        )
        figures.notes["orphaned replies counted by the partition sharer (unmatched after the kill)"] = orphans
        figures.notes["survivors' statuses"] = dict(
            sorted(collections.Counter(o.status for o in on_others).items())
        )
        figures.notes["late replies at the survivors"] = survivor.metric(
            "rpcgw_late_replies_total"
        ) + sharer.metric("rpcgw_late_replies_total")
        figures.require(
            all(o.status == 200 for o in on_others), "a surviving replica answered something other than 200"
        )
        figures.require(in_flight_lost > 0, "no request was in flight at the victim: the fault did not bite")
        figures.require(orphans > 0, "the sharer counted no orphaned replies")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )


SCENARIOS = [
    Scenario(
        "gateway-replica-kill",
        "triple",
        True,
        "SIGKILL 1 of 3 gateway replicas (200 ms handlers, 64 in flight) at 40 % of the load",
        replica_kill,
    )
]

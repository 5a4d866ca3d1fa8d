"""Hung brokers: every broker SIGSTOPped for 10 s under load, then SIGCONT.

A stopped broker keeps its TCP connections open and answers nothing, so librdkafka reports no
"all brokers down" (that waits for ``socket.timeout.ms``, 60 s): the gateway has to notice the
silence itself (`gateway.health`). The requests topic uses ``LogAppendTime``, so the broker's
own clock tells when each request was written, to compare with its ``rpc-deadline``.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time

from chaos import records
from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack
from devstack import KafkaCluster

HANG_SECONDS = 10.0
WAIT = 2
"""``Prefer: wait`` of the load: shorter than the hang, so calls in flight meet their deadline."""
PARTITIONS = 6
CALLERS_RECOVER = 15.0
"""Seconds after the SIGCONT from which every call must be 200: the workers' session timeout
(6 s), their group's rebalance, and the 2 s deadline of calls that waited for it."""


async def brokers_hang(kafka: Kafka, figures: Figures) -> None:
    """SIGSTOP every broker at 25 % of the load for 10 s; two gateways, two workers."""
    assert isinstance(kafka, KafkaCluster)
    stack = Stack(
        kafka,
        "brokers-hang",
        request_partitions=PARTITIONS,
        request_config={"message.timestamp.type": "LogAppendTime"},
    )
    async with closing(stack, figures):
        gateways = stack.add_production()
        await asyncio.to_thread(stack.wait_ready)
        load = Load(stack.urls, total=1600, rate=50, concurrency=64, wait=WAIT)
        stopped_at = 0.0  # epoch s
        unready: list[float | None] = []  # per gateway, s after the stop
        ready: list[float | None] = []  # per gateway, s after the SIGCONT
        resumed = 0.0  # time.perf_counter at the SIGCONT

        async def fault() -> None:
            nonlocal stopped_at, unready, ready, resumed
            await load.reached(400)
            started, stopped_at = time.perf_counter(), time.time()
            for node in kafka.nodes:
                node.send(signal.SIGSTOP)
            unready = await asyncio.gather(
                *(asyncio.to_thread(g.wait_readiness, False, HANG_SECONDS) for g in gateways)
            )
            await asyncio.sleep(max(0.0, HANG_SECONDS - (time.perf_counter() - started)))  # the hang itself
            for node in kafka.nodes:
                node.send(signal.SIGCONT)
            resumed = time.perf_counter()
            figures.mark(f"{len(kafka.nodes)} broker(s) SIGSTOPped", started)
            ready = await asyncio.gather(*(asyncio.to_thread(g.wait_readiness, True, 60) for g in gateways))

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        figures.notes["readyz false after SIGSTOP (s, per gateway)"] = [_rounded(u) for u in unready]
        figures.notes["readyz true again after SIGCONT (s, per gateway)"] = [_rounded(r) for r in ready]
        figures.require(
            all(r is not None for r in [*unready, *ready]) and len(unready) == len(ready) == len(gateways),
            "readiness did not turn false during the hang and true after it",
        )
        # The workers' sessions expire during a hang longer than their timeout (6 s): when the
        # coordinator resumes it rebalances the group, and calls wait for that, not the gateway.
        after = [o for o in load.outcomes if o.sent_at >= resumed]
        failing = [o.sent_at - resumed for o in after if o.status != 200]
        settled = max(failing, default=0.0)
        figures.notes["calls sent after the SIGCONT: statuses; all 200 from (s after it)"] = (
            f"{dict(collections.Counter(o.status for o in after))}; {settled:.1f}"
        )
        figures.require(
            bool(after) and settled <= CALLERS_RECOVER,
            f"calls sent {settled:.1f} s after the SIGCONT still failed (limit {CALLERS_RECOVER:g} s)",
        )
        figures.require(set(figures.statuses) <= {200, 503, 504}, f"statuses {sorted(figures.statuses)}")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")
        noticed = {i: stopped_at + (u or HANG_SECONDS) for i, u in enumerate(unready)}
        await asyncio.to_thread(_written_after_deadline, kafka, stack, figures, stopped_at, noticed)
        figures.notes["requests the workers skipped as expired"] = sum(
            w.metric("rpcworker_expired_total") for w in stack.workers
        )
        figures.notes["records dropped from the producers' queues (requests and cancel records)"] = sum(
            sum(
                v for k, v in g.by_label("rpcgw_produce_errors_total", "error").items() if k == "_PURGE_QUEUE"
            )
            for g in gateways
        )


def _written_after_deadline(
    kafka: KafkaCluster, stack: Stack, figures: Figures, stopped_at: float, noticed: dict[int, float]
) -> None:
    """A request the broker appended after its deadline must have left its gateway before that
    gateway noticed the hang: then it was on the wire (librdkafka keeps up to 5 requests in
    flight per connection, and no client can take those back). Anything still queued when the
    hang was noticed must be dropped, not written when the brokers return.

    ``noticed`` maps a gateway's reply partition to when its ``/readyz`` turned false (epoch s).
    """
    total, late = records.appended_past_deadline(kafka.bootstrap_servers, stack.requests, PARTITIONS)
    produced = [(deadline - WAIT, partition) for _, deadline, partition in late]  # WAIT s before it
    after = sum(1 for at, partition in produced if at > noticed[partition])
    figures.notes["requests in the topic / appended past their deadline"] = f"{total} / {len(late)}"
    figures.notes["those produced at (s after the SIGSTOP)"] = sorted(
        round(at - stopped_at, 2) for at, _ in produced
    )
    figures.require(
        after == 0,
        f"{after} requests produced after their gateway noticed the hang were written past their deadline",
    )


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


SCENARIOS = [
    Scenario(
        "broker-hang",
        "single",
        True,
        "SIGSTOP the single broker for 10 s at 25 % (deadline 2 s), then SIGCONT",
        brokers_hang,
    ),
    Scenario(
        "brokers-hang-all",
        "triple",
        False,
        "3 nodes: SIGSTOP all three brokers for 10 s at 25 % (deadline 2 s), then SIGCONT",
        brokers_hang,
    ),
]

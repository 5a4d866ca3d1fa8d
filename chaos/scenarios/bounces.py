"""Rolling bounce: each of 3 brokers SIGTERMed (a controlled shutdown) and restarted in turn, 5 rounds.

This is how an operator upgrades a cluster, and where Kafka's own system tests find lost
writes: RF 3, ``min.insync.replicas`` 2, ``acks=all``, so one broker down must cost callers
at most a leader move. The next broker goes down only once every partition is fully
replicated again, as a careful operator (or Strimzi) does it.
"""

from __future__ import annotations

import asyncio
import collections
import statistics
import time

from confluent_kafka.admin import AdminClient

from chaos.load import Load, Outcome
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing
from chaos.stack import Kafka, Stack
from devstack import KafkaCluster

ROUNDS = 5
RPC_RATE = 40
PUBLISH_RATE = 20
CAUGHT_UP_TIMEOUT = 120.0


async def rolling_bounce(kafka: Kafka, figures: Figures) -> None:
    """RPCs (40/s) and publishes (20/s) on two gateways and two workers while the brokers roll."""
    assert isinstance(kafka, KafkaCluster)
    stack = Stack(kafka, "rolling-bounce")
    events = stack.add_events()
    async with closing(stack, figures):
        stack.add_production(GATEWAY_PUBLISH_TOPICS=f'["{events}"]')
        await asyncio.to_thread(stack.wait_ready)
        # Sized well past the bounces; both end once the last broker is back and a tail ran.
        rpc = Load(stack.urls, total=RPC_RATE * 900, rate=RPC_RATE, concurrency=32, wait=5)
        publish = Load(
            stack.urls,
            total=PUBLISH_RATE * 900,
            rate=PUBLISH_RATE,
            concurrency=16,
            wait=5,
            path=f"/publish/{events}",
        )
        bounces: list[tuple[int, float, float]] = []  # (node id, down at, caught up at), perf_counter

        async def fault() -> None:
            await rpc.reached(400)
            topics = [stack.requests, stack.replies, events]
            for _ in range(ROUNDS):
                for node in kafka.nodes:
                    started = time.perf_counter()
                    await asyncio.to_thread(node.stop)
                    node.start()  # on the main thread: see devstack.process.Child.spawn
                    caught_up = await asyncio.to_thread(
                        _fully_replicated, kafka.bootstrap_servers, topics, CAUGHT_UP_TIMEOUT
                    )
                    figures.mark(f"broker {node.spec.node_id} bounced", started)
                    bounces.append((node.spec.node_id, started, time.perf_counter()))
                    if not caught_up:
                        figures.violations.append(
                            f"partitions not fully replicated {CAUGHT_UP_TIMEOUT} s after a restart"
                        )
                        return
            tail = len(rpc.outcomes) + 400
            await rpc.reached(tail)

        async def finish_after(schedule: asyncio.Task[None]) -> None:
            await schedule
            rpc.finish()
            publish.finish()

        watch = stack.watch_gateways()
        sampler = asyncio.create_task(watch.run())
        try:
            schedule = asyncio.create_task(fault())
            await asyncio.gather(rpc.run(), publish.run(), finish_after(schedule))
        finally:
            sampler.cancel()
        stack.account(figures, rpc)
        await asyncio.to_thread(stack.account_publishes, figures, publish)
        figures.notes["bounces"] = len(bounces)
        figures.notes["RPC statuses"] = dict(collections.Counter(o.status for o in rpc.outcomes))
        _per_bounce(figures, [*rpc.outcomes, *publish.outcomes], bounces)
        figures.require(len(bounces) == ROUNDS * len(kafka.nodes), f"only {len(bounces)} bounces completed")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")
        # A controlled shutdown moves leadership first: at most a timeout while it moves, never
        # a refusal (503) or a lost connection.
        figures.require(set(figures.statuses) <= {200, 202, 504}, f"statuses {sorted(figures.statuses)}")


def _per_bounce(figures: Figures, outcomes: list[Outcome], bounces: list[tuple[int, float, float]]) -> None:
    """p99 of the calls sent before the first bounce, then per bounce: p99 and errors of its calls."""
    if not bounces:
        return
    before = sorted(o.elapsed for o in outcomes if o.sent_at < bounces[0][1] and o.status < 300)
    if len(before) >= 2:
        figures.notes["p99 before the first bounce (ms)"] = round(
            statistics.quantiles(before, n=100)[98] * 1000
        )
    rows = []
    for node, start, end in bounces:
        during = [o for o in outcomes if start <= o.sent_at < end]
        ok = sorted(o.elapsed for o in during if o.status < 300)
        p99 = statistics.quantiles(ok, n=100)[98] * 1000 if len(ok) >= 2 else float("nan")
        errors = sum(1 for o in during if o.status >= 300 or o.status == 0)
        rows.append(f"node {node}: {end - start:.0f} s, p99 {p99:.0f} ms, {errors} errors")
    figures.notes["per bounce (down to fully replicated)"] = rows


def _fully_replicated(bootstrap: str, topics: list[str], timeout: float) -> bool:
    """Poll (the cluster's state) until every partition of ``topics`` has its full ISR."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(timeout=5)
            partitions = [p for t in topics for p in metadata.topics[t].partitions.values()]
            if partitions and all(len(p.isrs) == len(p.replicas) and p.leader >= 0 for p in partitions):
                return True
        except Exception:  # noqa: S110 - a broker still starting is the expected state
            pass
        time.sleep(0.5)  # polling the cluster's state; there is no event to await
    return False


SCENARIOS = [
    Scenario(
        "rolling-bounce",
        "triple",
        False,
        f"3 nodes RF3 min ISR 2: SIGTERM and restart each broker in turn, {ROUNDS} rounds, under steady load",
        rolling_bounce,
    ),
]

"""Broker faults: the single broker restarted mid-load; a partition leader killed in a 3-node cluster."""

from __future__ import annotations

import asyncio
import collections
import time

from confluent_kafka.admin import AdminClient

from chaos.load import Load, Outcome
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack
from devstack import KafkaCluster

OUTAGE_SECONDS = 5.0


async def broker_restart(kafka: Kafka, figures: Figures) -> None:
    """SIGKILL the only broker at 20 % of the load, start it again 5 s later on the same data."""
    assert isinstance(kafka, KafkaCluster)
    node = kafka.nodes[0]
    stack = Stack(kafka, "broker-restart")
    async with closing(stack, figures):
        stack.add_worker()
        stack.add_worker()
        gateway = stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        load = Load(stack.urls, total=3000, rate=60, concurrency=32, wait=3)
        marks: dict[str, object] = {}

        async def fault() -> None:
            await load.reached(600)
            killed = time.perf_counter()
            await asyncio.to_thread(node.kill)
            marks["readyz false after"] = await asyncio.to_thread(gateway.wait_readiness, False, 30)
            await asyncio.sleep(OUTAGE_SECONDS)  # the outage's length, not synchronisation
            node.start()  # on the main thread: see devstack.process.Child.spawn
            marks["outcomes before the restart"] = len(load.outcomes)
            broker, ready = await asyncio.gather(
                asyncio.to_thread(_answers_after, kafka.bootstrap_servers, stack.replies, 60),
                asyncio.to_thread(gateway.wait_readiness, True, 60),
            )
            figures.mark("broker SIGKILLed until the gateway is ready again", killed)
            marks["broker answers metadata after (s from start)"] = broker
            marks["readyz true again after (s from broker start)"] = ready
            marks["outcomes at recovery"] = len(load.outcomes)

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        figures.notes.update(marks)
        _outage_figures(figures, load.outcomes)
        figures.require(
            marks["readyz false after"] is not None, "/readyz never turned false during the outage"
        )
        figures.require(
            marks["readyz true again after (s from broker start)"] is not None, "the gateway did not recover"
        )
        recovered = load.outcomes[int(str(marks["outcomes at recovery"])) + 200 :]
        figures.notes["statuses after recovery (+200 calls)"] = dict(
            collections.Counter(o.status for o in recovered)
        )
        figures.require(
            bool(recovered) and all(o.status == 200 for o in recovered),
            "calls after recovery were not all 200",
        )


async def leader_kill(kafka: Kafka, figures: Figures) -> None:
    """3 nodes, RF 3, min ISR 2: SIGKILL the broker leading most request partitions at 30 %, restart at 60 %.

    Half the calls are RPCs, half publishes: every 202 (acks=all) must be in the topic afterwards.
    """
    assert isinstance(kafka, KafkaCluster)
    stack = Stack(kafka, "leader-kill")
    events = stack.add_events()
    async with closing(stack, figures):
        stack.add_production(GATEWAY_PUBLISH_TOPICS=f'["{events}"]')
        await asyncio.to_thread(stack.wait_ready)
        leader = await asyncio.to_thread(_busiest_leader, kafka.bootstrap_servers, stack.requests)
        victim = kafka.nodes[leader - 1]
        rpc = Load(stack.urls, total=1500, rate=40, concurrency=32, wait=5)
        publish = Load(stack.urls, total=1500, rate=40, concurrency=16, wait=5, path=f"/publish/{events}")

        async def fault() -> None:
            await rpc.reached(450)
            killed = time.perf_counter()
            await asyncio.to_thread(victim.kill)
            await rpc.reached(900)
            victim.start()  # on the main thread: see devstack.process.Child.spawn
            figures.mark("leader SIGKILLed until restarted", killed)

        await asyncio.gather(under_fault(rpc, fault(), stack), publish.run())
        stack.account(figures, rpc)
        await asyncio.to_thread(stack.account_publishes, figures, publish)
        figures.notes["killed broker"] = f"node {leader} (leader of most request partitions)"
        figures.notes["RPC statuses"] = dict(collections.Counter(o.status for o in rpc.outcomes))
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")


def _outage_figures(figures: Figures, outcomes: list[Outcome]) -> None:
    unavailable = sorted(o.elapsed for o in outcomes if o.status == 503)
    figures.notes["503 answers: count, slowest"] = (
        f"{len(unavailable)}, {unavailable[-1] * 1000:.0f} ms" if unavailable else "0"
    )
    figures.require(set(figures.statuses) <= {200, 503, 504}, f"statuses {sorted(figures.statuses)}")
    figures.require(figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost")
    figures.require(figures.duplicate_effects == 0, f"{figures.duplicate_effects} duplicate side effects")


def _answers_after(bootstrap: str, topic: str, timeout: float) -> float | None:
    """Seconds until a fresh client gets leaders for every partition of ``topic``; None on timeout."""
    started = time.monotonic()
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    while time.monotonic() - started < timeout:
        try:
            partitions = admin.list_topics(topic, timeout=1).topics[topic].partitions.values()
            if partitions and all(p.leader >= 0 for p in partitions):
                return time.monotonic() - started
        except Exception:  # noqa: S110 - not answering yet is the expected state
            pass
        time.sleep(0.1)  # polling the broker's state; there is no event to await
    return None


def _busiest_leader(bootstrap: str, topic: str) -> int:
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    leaders = collections.Counter(p.leader for p in metadata.topics[topic].partitions.values())
    return int(leaders.most_common(1)[0][0])


SCENARIOS = [
    Scenario(
        "broker-restart",
        "single",
        False,
        "SIGKILL the single broker at 20 %, restart after 5 s",
        broker_restart,
    ),
    Scenario(
        "leader-kill",
        "triple",
        False,
        "3 nodes RF3 min ISR 2: SIGKILL the busiest request-partition leader at 30 %, restart at 60 %",
        leader_kill,
    ),
]

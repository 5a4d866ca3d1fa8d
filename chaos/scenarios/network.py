"""Network faults between gateway and broker through toxiproxy: latency, a stall, reset connections."""

from __future__ import annotations

import asyncio
import collections

from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack
from chaos.toxiproxy import PROXY, ProxiedKafkaCluster

# (toxic type, attributes, start at completions, end at completions)
FAULTS: list[tuple[str, dict[str, int], int, int]] = [
    ("latency", {"latency": 100, "jitter": 20}, 300, 900),
    ("timeout", {"timeout": 0}, 1200, 1500),
    ("reset_peer", {"timeout": 0}, 1900, 2100),
]


async def proxy_faults(kafka: Kafka, figures: Figures) -> None:
    """The gateway reaches the broker only through toxiproxy; workers connect directly."""
    assert isinstance(kafka, ProxiedKafkaCluster)
    proxy = kafka.toxiproxy
    stack = Stack(kafka, "network", gateway_bootstrap=kafka.proxied_bootstrap)
    async with closing(stack, figures):
        stack.add_worker()
        stack.add_worker()
        gateway = stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        load = Load(stack.urls, total=2700, rate=60, concurrency=32, wait=3)
        windows: dict[str, tuple[int, int]] = {}
        readiness: dict[str, float | None] = {}

        async def fault() -> None:
            for kind, attributes, start, end in FAULTS:
                await load.reached(start)
                first = len(load.outcomes)
                for stream in ("downstream", "upstream"):
                    await asyncio.to_thread(
                        proxy.add_toxic, PROXY, f"{kind}-{stream}", kind, stream, **attributes
                    )
                await load.reached(end)
                for stream in ("downstream", "upstream"):
                    await asyncio.to_thread(proxy.remove_toxic, PROXY, f"{kind}-{stream}")
                windows[kind] = (first, len(load.outcomes))
                readiness[f"readyz true after {kind} removed (s)"] = await asyncio.to_thread(
                    gateway.wait_readiness, True, 60
                )

        await under_fault(load, fault(), stack)
        stack.account(figures, load)
        for kind, (first, last) in windows.items():
            during = collections.Counter(o.status for o in load.outcomes[first:last])
            figures.notes[f"statuses during {kind}"] = dict(during)
        figures.notes.update(readiness)
        tail = load.outcomes[-300:]
        figures.notes["statuses of the last 300 calls"] = dict(collections.Counter(o.status for o in tail))
        figures.require(all(o.status == 200 for o in tail), "the gateway did not recover after the faults")
        figures.require(set(figures.statuses) <= {200, 503, 504}, f"statuses {sorted(figures.statuses)}")
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )
        figures.require(all(v is not None for v in readiness.values()), "readiness did not come back")


SCENARIOS = [
    Scenario(
        "network-toxiproxy",
        "proxied",
        False,
        "gateway<->broker via toxiproxy: 100+-20 ms latency, then a stall (timeout), then reset_peer",
        proxy_faults,
    )
]

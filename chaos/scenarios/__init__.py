"""Scenario families, one module each; `SCENARIOS` lists them in run order."""

from __future__ import annotations

from chaos.scenarios import (
    badinput,
    bounces,
    brokers,
    cancels,
    gateways,
    hangs,
    network,
    overload,
    slowclients,
    soak,
    streams,
    workers,
)
from chaos.scenarios.catalogue import Scenario

SCENARIOS: list[Scenario] = [
    *workers.SCENARIOS,
    *streams.SCENARIOS,
    *cancels.SCENARIOS,
    *gateways.SCENARIOS,
    *overload.SCENARIOS,
    *badinput.SCENARIOS,
    *slowclients.SCENARIOS,
    *brokers.SCENARIOS,
    *hangs.SCENARIOS,
    *bounces.SCENARIOS,
    *network.SCENARIOS,
    *soak.SCENARIOS,
]

__all__ = ["SCENARIOS", "Scenario"]

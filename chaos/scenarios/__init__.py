"""Scenario families, one module each; `SCENARIOS` lists them in run order."""

from __future__ import annotations

from chaos.scenarios import badinput, brokers, gateways, network, overload, slowclients, workers
from chaos.scenarios.catalogue import Scenario

SCENARIOS: list[Scenario] = [
    *workers.SCENARIOS,
    *gateways.SCENARIOS,
    *overload.SCENARIOS,
    *badinput.SCENARIOS,
    *slowclients.SCENARIOS,
    *brokers.SCENARIOS,
    *network.SCENARIOS,
]

__all__ = ["SCENARIOS", "Scenario"]

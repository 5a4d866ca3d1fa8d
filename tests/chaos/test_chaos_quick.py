"""CI smoke of the fault-injection suite: `python -m chaos --quick` against real Kafka and processes.

Runs the quick subset in a subprocess (it starts its own broker, gateways and workers, and stops
them) and asserts the invariants on the JSON figures it writes, so a failure names the scenario
and the broken invariant. Budget: under four minutes on two cores (about 2.5 measured).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from chaos.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
QUICK = {s.name for s in SCENARIOS if s.quick}


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    report = tmp_path_factory.mktemp("chaos") / "figures.json"
    result = subprocess.run(
        [sys.executable, "-m", "chaos", "--quick", "--json", str(report)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert report.exists(), (
        f"no figures written (exit {result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return {f["name"]: f for f in orjson.loads(report.read_bytes())}


@pytest.mark.integration
@pytest.mark.timeout(270)
@pytest.mark.parametrize("name", sorted(QUICK))
def test_quick_scenario_keeps_the_invariants(figures: dict[str, dict[str, Any]], name: str) -> None:
    result = figures[name]
    assert result["sent"] > 0
    assert result["cross_delivered"] == 0
    assert result["lost_acknowledged"] == 0
    assert result["duplicate_effects"] == 0
    # Net of the harness's own event-loop stalls (measured per call); the raw figure is printed.
    assert result["worst_past_deadline_net"] <= 0.100
    assert result["crashes"] == []
    assert result["pending_after"], "no gateway was left to read the pending gauge from"
    assert all(value == 0 for value in result["pending_after"])
    assert result["violations"] == []

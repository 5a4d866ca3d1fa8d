"""``python -m chaos [--quick] [--only NAME ...] [--json FILE] [--plots DIR]``: run the scenarios.

Prints each scenario's figures; ``--plots`` also draws its calls over time.
Exit status 1 when any scenario broke an invariant.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
import traceback
from collections.abc import Coroutine
from pathlib import Path

from chaos.clusters import Clusters
from chaos.report import Figures, render, summary
from chaos.scenarios import SCENARIOS, Scenario
from chaos.scenarios.catalogue import ClusterKind
from chaos.timeline import plot
from devstack.signals import waking_on_signals


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="only the CI subset")
    parser.add_argument("--only", action="append", default=[], help="run this scenario (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    parser.add_argument(
        "--plots", type=Path, metavar="DIR", help="also write each scenario's timeline as DIR/<name>.png"
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return parser.parse_args()


def _selected(arguments: argparse.Namespace) -> list[Scenario]:
    chosen = [s for s in SCENARIOS if not s.long and (s.quick or not arguments.quick)]
    if arguments.only:
        unknown = set(arguments.only) - {s.name for s in SCENARIOS}
        if unknown:
            sys.exit(f"unknown scenarios: {sorted(unknown)}")
        chosen = [s for s in SCENARIOS if s.name in arguments.only]
    # Group by cluster so each cluster starts once.
    order = {"single": 0, "triple": 1, "proxied": 2}
    return sorted(chosen, key=lambda s: order[_cluster(s, arguments.quick)])


def _cluster(scenario: Scenario, quick: bool) -> ClusterKind:
    """The quick subset runs on one broker (CI's budget); a full run on the scenario's own."""
    return "single" if quick else scenario.cluster


def _run(scenario: Scenario, clusters: Clusters, kind: ClusterKind) -> Figures:
    figures = Figures(scenario.name, scenario.injected)
    started = time.monotonic()
    try:
        cluster = clusters.get(kind)
        if time.monotonic() - started > 1:
            figures.notes["cluster start"] = f"{time.monotonic() - started:.1f} s"
        asyncio.run(_interruptible(scenario.run(cluster, figures)))
    except Exception as error:
        traceback.print_exc()
        figures.violations.append(f"scenario raised {type(error).__name__}: {error}")
    figures.notes["duration"] = f"{time.monotonic() - started:.1f} s"
    return figures


async def _interruptible(run: Coroutine[None, None, None]) -> None:
    # asyncio.run's loop has no signal wakeup fd: while a scenario waits in asyncio.to_thread,
    # a Ctrl-C the kernel hands to a pool thread would wait for that call to end.
    async with waking_on_signals():
        await run


def _plot(figures: Figures, path: Path) -> None:
    # A broken plot must not cost the figures of the scenarios still to run, nor the JSON.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        plot(figures, path)
    except Exception:
        traceback.print_exc()
        print(f"   timeline plot failed: {path}", flush=True)
    else:
        print(f"   timeline plot: {path}", flush=True)


def _document(figures: Figures) -> dict[str, object]:
    """The figures as JSON-ready data, less the timeline (a soak's has millions of calls)."""
    document = dataclasses.asdict(dataclasses.replace(figures, timeline=[]))
    del document["timeline"]
    return document


def main() -> None:
    """Run the chosen scenarios in order and report."""
    arguments = _arguments()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if arguments.list:
        for scenario in SCENARIOS:
            kind = "quick" if scenario.quick else "long" if scenario.long else ""
            print(f"{scenario.name:<22} {kind:<6}{scenario.injected}")
        return
    results: list[Figures] = []
    clusters = Clusters()
    try:
        for scenario in _selected(arguments):
            figures = _run(scenario, clusters, _cluster(scenario, arguments.quick))
            results.append(figures)
            print(render(figures), flush=True)
            if arguments.plots is not None and figures.timeline:
                _plot(figures, arguments.plots / f"{scenario.name}.png")
    finally:
        clusters.close()
    print(summary(results), flush=True)
    if arguments.json is not None:
        # The stdlib encoder turns integer status keys into strings (orjson refuses mixed key types).
        arguments.json.write_text(json.dumps([_document(f) for f in results], default=str, indent=2))
    sys.exit(0 if all(f.passed for f in results) else 1)


if __name__ == "__main__":
    main()

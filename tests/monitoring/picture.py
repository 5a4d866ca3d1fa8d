"""Draw the dashboard's panels from a real Prometheus: ``python -m tests.monitoring.picture``.

Starts ``make run``'s stack (`LocalStack`) and a Prometheus configured from the chart, puts
about a minute of load through the gateway (successful calls, worker errors, calls that time
out, callers' ``Prefer: wait=0``, and two bursts past ``GATEWAY_MAX_PENDING`` that build worker
lag and are partly shed), then runs every query of the chart's Grafana dashboard over that
minute and draws one chart per panel, in the dashboard's layout, to
docs/images/dashboard-panels.png. Tracing is on (spans to the console exporter, in the
stack's log), so the latency panel shows the gateway's trace exemplars as dots.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import httpx
import matplotlib as mpl

from .configuration import configuration, render_monitoring
from .prometheus import REPO, Binaries, Prometheus
from .stack import LocalStack

mpl.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

DASHBOARD = REPO / "charts" / "kafka-rpc-gateway" / "dashboards" / "kafka-rpc-gateway.json"
OUTPUT = REPO / "docs" / "images" / "dashboard-panels.png"
INTERVAL = "1s"
RATE_INTERVAL = "10s"
"""What Grafana's ``$__rate_interval`` would be here: several 1 s scrapes."""
STACK_ENV = {
    "GATEWAY_MAX_PENDING": "200",  # the bursts below pass it: shed requests
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_TRACES_SAMPLER": "traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.1",
}
UNITS = {"reqps": "per second", "s": "seconds", "short": ""}


class Load:
    """Open-loop streams of calls, each at its own rate, for a while."""

    def __init__(self, client: httpx.AsyncClient, started: float) -> None:
        self.client = client
        self.started = started
        self.calls: list[asyncio.Task[int]] = []

    async def stream(
        self, method: str, body: dict[str, Any], rate: float, start: float, stop: float, *, wait: float
    ) -> None:
        """``rate`` calls a second from ``start`` to ``stop`` seconds after the start."""
        await asyncio.sleep(max(0.0, self.started + start - time.monotonic()))  # pacing, not synchronisation
        while time.monotonic() < self.started + stop:
            self.calls.append(asyncio.create_task(self.call(method, body, wait)))
            await asyncio.sleep(random.expovariate(rate))  # a Poisson stream of calls

    async def burst(self, method: str, body: dict[str, Any], count: int, at: float, wait: float) -> None:
        """``count`` calls at once, ``at`` seconds after the start."""
        await asyncio.sleep(max(0.0, self.started + at - time.monotonic()))
        self.calls += [asyncio.create_task(self.call(method, body, wait)) for _ in range(count)]

    async def call(self, method: str, body: dict[str, Any], wait: float) -> int:
        """The status of one call; 0 if the connection failed (counted, not raised: it is load)."""
        headers = {"content-type": "application/json", "prefer": f"wait={wait:g}"}
        try:
            response = await self.client.post(f"/rpc/{method}", content=json.dumps(body), headers=headers)
        except httpx.TransportError:
            return 0
        return response.status_code


async def drive(gateway_url: str, seconds: float) -> dict[int, int]:
    """Put the load through the gateway; the statuses it answered, counted."""
    # Idle connections are dropped well before the gateway's keep-alive timeout (5 s) closes
    # them, so a call never goes out on a connection the gateway is closing.
    limits = httpx.Limits(max_connections=1000, keepalive_expiry=2)
    async with httpx.AsyncClient(base_url=gateway_url, timeout=30, limits=limits) as client:
        load = Load(client, time.monotonic())
        streams: list[Awaitable[None]] = [
            load.stream("echo", {"hello": "kafka"}, 20, 0, seconds, wait=5),
            load.stream("sleep", {"seconds": 0.05}, 5, 0, seconds, wait=5),
            load.stream("sleep", {"seconds": 0.3}, 2, 0, seconds, wait=5),
            load.stream("fail", {"status": 500}, 0.5, 0, seconds, wait=5),
            load.stream("fail", {"status": 404}, 0.5, 0, seconds, wait=5),
            load.stream("sleep", {"seconds": 3}, 3, seconds * 0.2, seconds * 0.45, wait=1),
            load.stream("echo", {"hello": "now"}, 2, seconds * 0.3, seconds * 0.4, wait=0),
            # Two bursts past the pending cap: the first one's sheds create the counter's series,
            # which rate() cannot see (docs/OBSERVABILITY.md, Caveats); the second one's it can.
            load.burst("sleep", {"seconds": 1.0}, 300, seconds * 0.55, wait=8),
            load.burst("sleep", {"seconds": 1.5}, 450, seconds * 0.7, wait=8),
        ]
        await asyncio.gather(*streams)
        statuses = await asyncio.gather(*load.calls)
    counted: dict[int, int] = {}
    for status in statuses:
        counted[status] = counted.get(status, 0) + 1
    return counted


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def draw(prometheus: Prometheus, start: float, end: float, output: Path) -> None:
    """One chart per dashboard panel, laid out as the dashboard's grid."""
    dashboard = json.loads(DASHBOARD.read_text())
    panels = sorted(dashboard["panels"], key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"]))
    rows = (len(panels) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(14, 3.2 * rows), sharex=True, squeeze=False)
    for axis, panel in zip(axes.flat, panels, strict=False):
        exemplar_queries = set()
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            expr = expr.replace("$namespace", "apps").replace("$method", ".*")
            for series in prometheus.query_range(expr, start, end, 1):
                times = [t - start for t, _ in series.points]
                axis.plot(
                    times, [v for _, v in series.points], label=legend(target["legendFormat"], series.labels)
                )
            if target.get("exemplar"):
                # The exemplars are the histogram's, whichever quantile a target computes.
                exemplar_queries.add(expr.split("rate(")[1].split("[")[0])
        for selector in exemplar_queries:
            exemplars = prometheus.query_exemplars(selector, start, end)
            if exemplars:
                axis.scatter(
                    [t - start for _, _, t in exemplars],
                    [v for _, v, _ in exemplars],
                    s=8,
                    color="grey",
                    alpha=0.5,
                    label="exemplars (trace_id)",
                )
        axis.set_title(panel["title"], fontsize=10)
        axis.set_ylabel(UNITS.get(panel["fieldConfig"]["defaults"]["unit"], ""), fontsize=8)
        axis.tick_params(labelsize=8)
        axis.grid(alpha=0.3)
        if axis.has_data():
            axis.legend(fontsize=7, loc="upper left")
    for axis in axes[-1]:
        axis.set_xlabel("seconds since the load started", fontsize=8)
    figure.suptitle(
        "Kafka RPC Gateway dashboard panels: make run's stack, a real Prometheus, one minute of load",
        fontsize=11,
    )
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=90)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.monitoring.picture", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    binaries = Binaries.build()
    manifests = render_monitoring(INTERVAL)
    with tempfile.TemporaryDirectory(prefix="kafka-rpc-picture-") as directory:
        workdir = Path(directory)
        with LocalStack(workdir / "stack", STACK_ENV) as stack:
            config = configuration(manifests, stack.ports, workdir / "rules.yaml", INTERVAL)
            with Prometheus(binaries, workdir / "prometheus", config) as prometheus:
                prometheus.wait_for('count(up{namespace="apps"} == 1) == 2', 30)
                start = time.time()
                statuses = asyncio.run(drive(stack.gateway_url, args.seconds))
                end = time.time()
                # Every sample of the load scraped: the newest scrape is past its end.
                prometheus.wait_for(f'min(timestamp(up{{namespace="apps"}})) > {end + 1}', 30)
                draw(prometheus, start, end + 1, args.output)
    print(f"{args.output}: statuses {dict(sorted(statuses.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

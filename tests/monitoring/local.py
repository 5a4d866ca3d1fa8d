"""A real Prometheus for ``make run``: ``python -m tests.monitoring.local`` (``make prometheus``).

It scrapes the gateway (127.0.0.1:8080) and the worker (127.0.0.1:9090) every 5 s with the
chart's ServiceMonitors as its scrape jobs and evaluates the chart's alert rules, so the
dashboard's and the runbook's queries work unchanged (``namespace="apps"``). It listens on
127.0.0.1:9091 (9090 is the worker's) and keeps its data in a temporary directory, removed
at Ctrl-C. The web UI is not built in (tools/prometheus.sh says why): use the HTTP API.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
from pathlib import Path

from devstack.signals import wait_in_slices

from .configuration import configuration, render_monitoring
from .prometheus import Binaries, Prometheus, PrometheusError, ToolError

INTERVAL = "5s"


def main(argv: list[str] | None = None) -> int:
    """Run until Ctrl-C; the exit status says whether Prometheus started."""
    parser = argparse.ArgumentParser(prog="python -m tests.monitoring.local", description=__doc__)
    parser.add_argument("--gateway-port", type=int, default=8080, help="the gateway's port (GATEWAY_PORT)")
    parser.add_argument("--worker-port", type=int, default=9090, help="the worker's /metrics port")
    parser.add_argument("--port", type=int, default=9091, help="Prometheus' own port")
    args = parser.parse_args(argv)
    try:
        binaries = Binaries.build()
        manifests = render_monitoring(INTERVAL)
    except ToolError as error:
        print(error, file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="kafka-rpc-prometheus-") as directory:
        workdir = Path(directory)
        ports = {"gateway": args.gateway_port, "worker": args.worker_port}
        config = configuration(manifests, ports, workdir / "rules.yaml", INTERVAL)
        server = Prometheus(binaries, workdir, config, port=args.port)
        stop = threading.Event()
        # Ctrl-C or SIGTERM; the server has a session of its own, so only this process gets them.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            server.start()
            print(_banner(server.url, args.gateway_port, args.worker_port), flush=True)
            wait_in_slices(stop.wait)
        except PrometheusError as error:
            print(error, file=sys.stderr)
            return 1
        finally:
            server.stop()
    return 0


def _banner(url: str, gateway_port: int, worker_port: int) -> str:
    query = f"{url}/api/v1/query"
    return f"""
Prometheus is running at {url}, scraping the gateway 127.0.0.1:{gateway_port} and the worker
127.0.0.1:{worker_port} every {INTERVAL} with the chart's alert rules. Try:

  curl -s {query} --data-urlencode 'query=sum by (method, outcome) (rpcgw_requests_total)'
  curl -s {query} --data-urlencode 'query=rpcgw_timeouts_total'
  curl -s {url}/api/v1/alerts
  curl -s {url}/api/v1/targets

Stop: Ctrl-C
"""


if __name__ == "__main__":
    sys.exit(main())

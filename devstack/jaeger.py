"""A real Jaeger v2 (built by tools/jaeger.sh) on loopback: OTLP/HTTP in, its query API out.

``python -m devstack.jaeger`` (``make jaeger``) runs one on the standard ports (OTLP 4318,
query 16686) until Ctrl-C, for ``make run`` with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at it;
tests start one on free ports with `Jaeger`. Storage is in memory: traces go when it stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import Child

HERE = Path(__file__).resolve().parent
TOOLS = HERE.parent / "tools"
CONFIG = HERE / "jaeger.yaml"
STARTUP_TIMEOUT = 30.0


class Jaeger:
    """One Jaeger process; ``otlp_endpoint`` takes spans, `trace` reads them back."""

    def __init__(self, log: Path, *, otlp_port: int | None = None, query_port: int | None = None) -> None:
        free_otlp, free_query, query_grpc, health = claim(4)
        self.otlp_port = otlp_port or free_otlp
        self.query_port = query_port or free_query
        self._ports = {
            "JAEGER_OTLP_PORT": self.otlp_port,
            "JAEGER_QUERY_PORT": self.query_port,
            "JAEGER_QUERY_GRPC_PORT": query_grpc,
            "JAEGER_HEALTH_PORT": health,
        }
        self._log = log
        self._child: Child | None = None
        self._api = httpx.Client(base_url=self.query_url, timeout=5)

    @property
    def otlp_endpoint(self) -> str:
        """``OTEL_EXPORTER_OTLP_ENDPOINT`` for processes that send it spans."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        """The query API (and UI) base URL."""
        return f"http://127.0.0.1:{self.query_port}"

    def start(self) -> None:
        """Build (once) and start Jaeger; return when its health check and query API answer.

        Raises:
            subprocess.CalledProcessError: the build failed (its output says why).
            NotReadyError: it did not come up (its log, ``log``, says why).
        """
        binary = subprocess.run(
            [str(TOOLS / "jaeger.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
        env = {**os.environ, **{name: str(port) for name, port in self._ports.items()}}
        self._child = Child.spawn("jaeger", [binary, "--config", f"file:{CONFIG}"], env, self._log)
        health = self._ports["JAEGER_HEALTH_PORT"]
        wait_until_ready(f"http://127.0.0.1:{health}/status", STARTUP_TIMEOUT, self._check)
        wait_until_ready(f"{self.query_url}/api/services", STARTUP_TIMEOUT, self._check)

    def _check(self) -> None:
        if self._child is not None and self._child.process.poll() is not None:
            raise RuntimeError(f"jaeger exited with {self._child.process.returncode}:\n{self._child.tail()}")

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans of one trace (`spans`); empty while Jaeger does not have it."""
        return spans(self._api, trace_id)

    def stop(self) -> None:
        """Stop it (its traces go with it)."""
        self._api.close()
        if self._child is not None:
            self._child.stop(10)

    def __enter__(self) -> Jaeger:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def spans(api: httpx.Client, trace_id: str) -> list[dict[str, Any]]:
    """The spans of one trace from the query API (v3, OTLP JSON) at ``api``'s base URL, each
    with its resource's ``service.name``; empty when Jaeger does not have it (yet)."""
    response = api.get(f"/api/v3/traces/{trace_id}")
    if response.status_code == 404:
        return []
    response.raise_for_status()
    found: list[dict[str, Any]] = []
    for resource_spans in response.json()["result"]["resourceSpans"]:
        service = attributes(resource_spans["resource"]).get("service.name")
        for scope_spans in resource_spans["scopeSpans"]:
            found.extend({**span, "service.name": service} for span in scope_spans["spans"])
    return found


def attributes(item: dict[str, Any]) -> dict[str, Any]:
    """A span's or resource's OTLP JSON attributes as plain values."""
    return {pair["key"]: next(iter(pair["value"].values()), None) for pair in item.get("attributes", [])}


def main() -> int:
    """Run Jaeger on the standard ports until Ctrl-C."""
    with (
        tempfile.TemporaryDirectory(prefix="jaeger-") as directory,
        Jaeger(Path(directory) / "jaeger.log", otlp_port=4318, query_port=16686) as jaeger,
    ):
        print(
            f"Jaeger is running: OTLP {jaeger.otlp_endpoint}, query API {jaeger.query_url}/api/v3/traces.\n"
            f"Send it traces:  OTEL_EXPORTER_OTLP_ENDPOINT={jaeger.otlp_endpoint} make run\n"
            f"Draw one:        .venv/bin/python -m devstack.timeline <trace id> trace.png\n"
            "Stop: Ctrl-C",
            flush=True,
        )
        for stop in (signal.SIGINT, signal.SIGTERM):  # as Ctrl-C does, even if started with SIGINT ignored
            signal.signal(stop, signal.default_int_handler)
        try:
            while True:
                signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

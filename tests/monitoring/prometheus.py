"""A real Prometheus: `Binaries` built by tools/prometheus.sh, and `Prometheus`, the server
on a free loopback port, read through its HTTP API. tests/monitoring/configuration.py
configures it from the chart.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import Child

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
POLL_SECONDS = 0.25
"""Between two queries of a `Prometheus.wait_for`; a scrape interval in tests is 1 s."""


class ToolError(Exception):
    """A tools/*.sh script could not provide its binary; the message ends with its log."""


class PrometheusError(Exception):
    """The Prometheus HTTP API refused a query, or a condition did not hold in time."""


def tool_output(script: str, timeout: float = 1800) -> str:
    """What ``tools/<script>`` prints on stdout (a path), building its binary if need be.

    Raises:
        ToolError: the script failed; its stderr is in the message.
    """
    result = subprocess.run(
        [str(REPO / "tools" / script)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise ToolError(f"tools/{script} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip()


@dataclass(frozen=True)
class Binaries:
    """The directory tools/prometheus.sh prints, holding ``prometheus`` and ``promtool``."""

    directory: Path

    @classmethod
    def build(cls) -> Binaries:
        """Build once (cached), or raise `ToolError`."""
        return cls(Path(tool_output("prometheus.sh")))

    @property
    def prometheus(self) -> Path:
        return self.directory / "prometheus"

    @property
    def promtool(self) -> Path:
        return self.directory / "promtool"

    def run_promtool(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        """``promtool <arguments>``, its output captured; the caller checks the return code."""
        return subprocess.run(
            [str(self.promtool), *arguments], capture_output=True, text=True, timeout=60, check=False
        )


@dataclass(frozen=True)
class Sample:
    """One element of an instant vector."""

    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One element of a range query's matrix: (unix time, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class Prometheus:
    """A ``prometheus`` process with its own data directory, on a free 127.0.0.1 port.

    Use as a context manager, or `start` and `stop`; `stop` is idempotent.
    """

    def __init__(
        self, binaries: Binaries, workdir: Path, config: dict[str, Any], port: int | None = None
    ) -> None:
        self._binaries = binaries
        self._workdir = workdir
        self._config = config
        self.port = port or claim(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        self._child: Child | None = None
        self._http = httpx.Client(base_url=self.url, timeout=10)

    def start(self, timeout: float = 30.0) -> None:
        """Write the configuration, start the server and wait for ``/-/ready``.

        Raises:
            PrometheusError: it exited or was not ready in time; its log is in the message.
        """
        self._workdir.mkdir(parents=True, exist_ok=True)
        config_file = self._workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(self._config, sort_keys=False))
        command = [
            str(self._binaries.prometheus),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={self._workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # The gateway's latency histogram carries trace ids as exemplars (OpenMetrics).
            "--enable-feature=exemplar-storage",
        ]
        self._child = Child.spawn("prometheus", command, None, self._workdir / "prometheus.log")
        try:
            wait_until_ready(f"{self.url}/-/ready", timeout, self._check_running)
        except Exception as error:
            tail = self.log_tail()
            self.stop()
            raise PrometheusError(f"prometheus did not start: {error}\n{tail}") from error

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self._child is not None:
            self._child.stop(10.0)
            self._child = None
        self._http.close()

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        """The end of the server's log, for failure messages."""
        return self._child.tail(30) if self._child is not None else ""

    def query(self, expr: str) -> list[Sample]:
        """``expr`` evaluated now; an instant vector (a scalar comes back as one unlabelled sample)."""
        data = self._api("/api/v1/query", {"query": expr})
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        return [Sample(item["metric"], float(item["value"][1])) for item in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        """``expr`` from ``start`` to ``end`` (unix seconds) every ``step`` seconds."""
        data = self._api("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})
        return [
            Series(item["metric"], [(float(t), float(v)) for t, v in item["values"]])
            for item in data["result"]
        ]

    def query_exemplars(
        self, expr: str, start: float, end: float
    ) -> list[tuple[dict[str, str], float, float]]:
        """Exemplars of the series ``expr`` selects: (exemplar labels, value, unix time)."""
        data = self._api("/api/v1/query_exemplars", {"query": expr, "start": start, "end": end})
        return [
            (exemplar["labels"], float(exemplar["value"]), float(exemplar["timestamp"]))
            for series in data
            for exemplar in series["exemplars"]
        ]

    def wait_for(self, expr: str, timeout: float) -> list[Sample]:
        """Poll ``expr`` until it returns something (write the condition into it: ``x >= 4``).

        Raises:
            PrometheusError: still empty after ``timeout`` seconds.
        """
        return self.until(lambda: self.query(expr), timeout, expr)

    def until(self, answer: Callable[[], list[T]], timeout: float, what: str) -> list[T]:
        """Call ``answer`` (a query) until it returns a non-empty list, and return that.

        Raises:
            PrometheusError: still empty after ``timeout`` seconds; ``what`` names it.
        """
        deadline = time.monotonic() + timeout
        while not (result := answer()):
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"{what!r} stayed empty for {timeout:g} s; targets: {self.targets()}\n{self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)  # polling Prometheus' API, bounded by the deadline
        return result

    def targets(self) -> list[str]:
        """Each scrape target's job, health and last error, for failure messages."""
        active = self._api("/api/v1/targets", {"state": "active"})["activeTargets"]
        return [f"{t['labels'].get('job')} {t['health']} {t['lastError']!r}" for t in active]

    def _api(self, path: str, params: Mapping[str, str | float]) -> Any:
        response = self._http.get(path, params=dict(params))
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise PrometheusError(f"{path} {dict(params)}: {response.status_code} {body.get('error')}")
        return body["data"]

    def _check_running(self) -> None:
        if self._child is not None and (code := self._child.process.poll()) is not None:
            raise PrometheusError(f"prometheus exited with status {code}")

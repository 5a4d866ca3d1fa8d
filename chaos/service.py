"""A gateway or worker subprocess: its port, log, probes, metrics, signals and exit status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from devstack.ports import claim
from devstack.probes import metric_total
from devstack.process import Child

ROOT = Path(__file__).resolve().parents[1]
# The broker's minimum session timeout: a killed worker's partitions move after ~6 s.
WORKER_KAFKA_PROPERTIES: dict[str, object] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


class Service:
    """One ``python -m <module>`` child with its own HTTP port; killed signals are remembered."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.port = port
        self._argv = argv
        self._env = {**os.environ, **env}
        self.log = Path(tempfile.mkstemp(prefix=f"chaos-{name}-", suffix=".log")[1])
        self.killed_on_purpose = False
        self.crashes: list[int] = []
        """Exit codes of incarnations that died without being told to."""
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, *self._argv]
        return Child.spawn(self.name, command, self._env, self.log, cwd=ROOT, append=True).process

    @property
    def url(self) -> str:
        """Base URL of the HTTP port."""
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> httpx.Response | None:
        """GET on the child's port; None while it does not answer."""
        try:
            return httpx.get(f"{self.url}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        """``/readyz`` answers 200."""
        return self._readiness() is True

    def _readiness(self) -> bool | None:
        response = self.get("/readyz")
        if response is None or response.status_code not in (200, 503):
            return None
        return response.status_code == 200

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ``/readyz`` until 200; raises after ``timeout``."""
        if self.wait_readiness(True, timeout) is None:
            raise TimeoutError(f"{self.name} not ready after {timeout} s:\n{self.output()}")

    def wait_readiness(self, ready: bool, timeout: float) -> float | None:
        """Poll ``/readyz`` (another process's state) until it answers 200 (``ready``) or 503;
        seconds taken, or None. A probe that gets no answer says neither."""
        started = time.monotonic()
        while self._readiness() is not ready:
            self.check_alive()
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.1)
        return time.monotonic() - started

    def metric(self, name: str) -> float:
        """Sum of the samples of ``name`` over all label sets; 0 if none."""
        response = self.get("/metrics")
        if response is None:
            raise RuntimeError(f"{self.name} /metrics does not answer:\n{self.output()}")
        return metric_total(response.text, name)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Samples of ``name`` (full sample name, e.g. ``..._total``) summed per value of ``label``."""
        response = self.get("/metrics")
        if response is None:
            raise RuntimeError(f"{self.name} /metrics does not answer:\n{self.output()}")
        sums: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name:
                    value = sample.labels.get(label, "")
                    sums[value] = sums.get(value, 0.0) + sample.value
        return sums

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal; SIGKILL marks the next exit as intended."""
        if signum in (signal.SIGKILL, signal.SIGTERM):
            self.killed_on_purpose = True
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL and reap."""
        self.signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self) -> None:
        """Start a new incarnation with the same environment and port."""
        self.check_alive()
        self.killed_on_purpose = False
        self.process = self._spawn()

    def check_alive(self) -> None:
        """Record an exit nobody asked for (a crash)."""
        code = self.process.poll()
        if code is not None and not self.killed_on_purpose and code not in self.crashes:
            self.crashes.append(code)

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGCONT first, in case it is paused); see `stopped`."""
        self.check_alive()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.send_signal(signal.SIGTERM)

    def stopped(self, grace: float = 20.0) -> int:
        """Wait for the exit after `terminate`, SIGKILL after ``grace``; the exit code.

        A process that needed the SIGKILL is recorded as a failure (-999).
        """
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.crashes.append(-999)
            self.process.kill()
            return self.process.wait(10)

    def output(self, chars: int = 4000) -> str:
        """The tail of the child's log."""
        return self.log.read_text(errors="replace")[-chars:]


def gateway(name: str, bootstrap: str, env: dict[str, str]) -> Service:
    """``python -m gateway`` on a free loopback port."""
    port = claim(1)[0]
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_AUTH": "none",
        **env,
    }
    return Service(name, ["-m", "gateway"], settings, port)


def worker(name: str, bootstrap: str, env: dict[str, str], kafka: dict[str, object] | None = None) -> Service:
    """``python -m workers --handlers chaos.handlers:registry`` with a low session timeout."""
    port = claim(1)[0]
    settings = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_PROPERTIES": orjson.dumps({**WORKER_KAFKA_PROPERTIES, **(kafka or {})}).decode(),
        "WORKER_METRICS_HOST": "127.0.0.1",
        "WORKER_METRICS_PORT": str(port),
        "WORKER_LOG_LEVEL": "WARNING",
        **env,
    }
    return Service(name, ["-m", "workers", "--handlers", "chaos.handlers:registry"], settings, port)

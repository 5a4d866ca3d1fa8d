"""toxiproxy (built by tools/toxiproxy.sh) and a one-node cluster whose gateway listener goes through it.

devstack advertises one PLAINTEXT listener. To put a proxy between the gateway and the broker
without slowing the workers, `ProxiedKafkaCluster` adds a second listener, ``PROXIED``, whose
advertised port is the proxy's: clients bootstrapping at `proxied_bootstrap` get metadata that
sends them through toxiproxy again for every connection, while workers keep the direct one.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from devstack import KafkaCluster
from devstack.node import NodeSpec
from devstack.ports import claim

TOOLS = Path(__file__).resolve().parents[1] / "tools"


class Toxiproxy:
    """The toxiproxy server on a free loopback port, and its HTTP API."""

    def __init__(self) -> None:
        self.port = claim(1)[0]
        self._process: subprocess.Popen[bytes] | None = None
        self._api = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=5)

    def __enter__(self) -> Toxiproxy:
        binary = subprocess.run(
            [str(TOOLS / "toxiproxy.sh")], check=True, capture_output=True, text=True
        ).stdout.strip()
        self._process = subprocess.Popen(
            [binary, "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while not self._answers():
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError("toxiproxy did not start")
            time.sleep(0.05)  # polling another process's port until it listens
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._api.close()
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def _answers(self) -> bool:
        try:
            return self._api.get("/version").status_code == 200
        except httpx.HTTPError:
            return False

    def proxy(self, name: str, listen: int, upstream: int) -> None:
        """Create (or replace) proxy ``name``: 127.0.0.1:listen -> 127.0.0.1:upstream."""
        self._api.delete(f"/proxies/{name}")
        spec = {"name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}"}
        self._api.post("/proxies", json=spec).raise_for_status()

    def add_toxic(
        self, proxy: str, name: str, kind: str, stream: str = "downstream", **attributes: Any
    ) -> None:
        """Add a toxic (``latency``, ``timeout``, ``reset_peer``, ...) to every connection of ``proxy``."""
        toxic = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        self._api.post(f"/proxies/{proxy}/toxics", json=toxic).raise_for_status()

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic; connections carry on unharmed."""
        self._api.delete(f"/proxies/{proxy}/toxics/{name}").raise_for_status()


PROXY = "kafka"


class ProxiedKafkaCluster(KafkaCluster):
    """One node with a second listener advertised at a toxiproxy port (see the module docstring)."""

    def __init__(self, toxiproxy: Toxiproxy) -> None:
        super().__init__(nodes=1)
        self.toxiproxy = toxiproxy
        self.proxied_bootstrap = ""
        """``host:port`` of the proxy; gateways bootstrap here."""

    def node_properties(self, spec: NodeSpec, voters: str) -> dict[str, str]:
        properties = super().node_properties(spec, voters)
        internal, listen = claim(2)
        self.toxiproxy.proxy(PROXY, listen, internal)
        self.proxied_bootstrap = f"127.0.0.1:{listen}"
        properties["listeners"] += f",PROXIED://127.0.0.1:{internal}"
        properties["advertised.listeners"] += f",PROXIED://127.0.0.1:{listen}"
        properties["listener.security.protocol.map"] += ",PROXIED:PLAINTEXT"
        return properties

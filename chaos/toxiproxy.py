"""toxiproxy (built by tools/toxiproxy.sh) and a cluster whose nodes can each be reached through it.

devstack advertises one PLAINTEXT listener per node. To put a proxy between some clients and the
brokers while the others (and the brokers among themselves) connect directly,
`ProxiedKafkaCluster` gives every node a second listener, ``PROXIED``, whose advertised port is
that node's proxy: clients bootstrapping at `ProxiedKafkaCluster.proxied_bootstrap` get metadata
that sends them through toxiproxy again for every broker connection; clients bootstrapping at
``bootstrap_servers`` (and replication, on PLAINTEXT) bypass it.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from devstack import KafkaCluster
from devstack.node import NodeSpec
from devstack.ports import claim

TOOLS = Path(__file__).resolve().parents[1] / "tools"
BOTH_STREAMS = ("downstream", "upstream")
"""toxiproxy's names for broker -> client and client -> broker."""


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

    def proxy(self, name: str, upstream: int, listen: int = 0) -> int:
        """Create (or replace) proxy ``name``: 127.0.0.1:listen -> 127.0.0.1:upstream; the listen port.

        With ``listen`` 0 toxiproxy binds a free port itself, so no other process can take it
        between choosing and binding.
        """
        self._api.delete(f"/proxies/{name}")
        spec = {"name": name, "listen": f"127.0.0.1:{listen}", "upstream": f"127.0.0.1:{upstream}"}
        response = self._api.post("/proxies", json=spec)
        response.raise_for_status()
        return int(str(response.json()["listen"]).rsplit(":", 1)[1])

    def add_toxic(
        self, proxy: str, name: str, kind: str, stream: str = "downstream", **attributes: Any
    ) -> None:
        """Add a toxic (``latency``, ``bandwidth``, ``timeout``, ...) to every connection of ``proxy``."""
        toxic = {"name": name, "type": kind, "stream": stream, "toxicity": 1.0, "attributes": attributes}
        self._api.post(f"/proxies/{proxy}/toxics", json=toxic).raise_for_status()

    def remove_toxic(self, proxy: str, name: str) -> None:
        """Remove a toxic; connections carry on unharmed."""
        self._api.delete(f"/proxies/{proxy}/toxics/{name}").raise_for_status()

    def reset(self) -> None:
        """Remove every toxic of every proxy (and re-enable them all)."""
        self._api.post("/reset").raise_for_status()


class ProxiedKafkaCluster(KafkaCluster):
    """``nodes`` nodes (default 3), each with a ``PROXIED`` listener behind proxy ``kafka-<node id>``."""

    def __init__(self, toxiproxy: Toxiproxy, nodes: int = 3) -> None:
        super().__init__(nodes=nodes)
        self.toxiproxy = toxiproxy
        self.proxies: dict[str, int] = {}
        """Proxy name -> its listen port, one per node."""
        self._internal: list[int] = []

    @property
    def proxied_bootstrap(self) -> str:
        """``host:port`` of every node's proxy, comma-separated: proxied clients bootstrap here."""
        return ",".join(f"127.0.0.1:{port}" for port in self.proxies.values())

    def prepare(self, directory: Path) -> None:
        super().prepare(directory)
        # Claimed together so that they are distinct: no node binds its own before all are chosen.
        self._internal = claim(self.size)
        self.proxies = {}

    def node_properties(self, spec: NodeSpec, voters: str) -> dict[str, str]:
        properties = super().node_properties(spec, voters)
        internal = self._internal[spec.node_id - 1]
        listen = self.toxiproxy.proxy(f"kafka-{spec.node_id}", internal)
        self.proxies[f"kafka-{spec.node_id}"] = listen
        properties["listeners"] += f",PROXIED://127.0.0.1:{internal}"
        properties["advertised.listeners"] += f",PROXIED://127.0.0.1:{listen}"
        properties["listener.security.protocol.map"] += ",PROXIED:PLAINTEXT"
        return properties

    def add_toxic(
        self, name: str, kind: str, attributes: Mapping[str, Any], streams: Sequence[str] = BOTH_STREAMS
    ) -> None:
        """Add toxic ``<name>-<stream>`` to each of ``streams`` of every node's proxy."""
        for proxy in self.proxies:
            for stream in streams:
                self.toxiproxy.add_toxic(proxy, f"{name}-{stream}", kind, stream, **attributes)

    def remove_toxic(self, name: str, streams: Sequence[str] = BOTH_STREAMS) -> None:
        """Remove what `add_toxic` added under ``name``."""
        for proxy in self.proxies:
            for stream in streams:
                self.toxiproxy.remove_toxic(proxy, f"{name}-{stream}")

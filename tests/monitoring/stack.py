"""``make run`` as a child process: Kafka, one worker and one gateway, on free loopback ports.

`LocalStack` runs ``python -m devstack`` exactly as ``make run`` does (its own Kafka broker,
or the cluster ``KAFKA_BOOTSTRAP_SERVERS`` names), with the gateway and the worker's
monitoring port on 127.0.0.1 only. `Caller` sends it requests in concurrent bursts.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import httpx

from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import Child

READY_WITHIN = 60.0
"""Seconds for Kafka, the worker and the gateway to be ready (the Kafka jars cached: ``make kafka-libs``)."""
STOP_WITHIN = 45.0
"""devstack drains the gateway, then the worker (30 s grace each at most), then stops Kafka."""


class StackError(Exception):
    """The stack did not start; the message ends with its log."""


class LocalStack:
    """``python -m devstack`` with its output in ``workdir/devstack.log``, and ``env`` added to
    its environment (e.g. ``GATEWAY_MAX_PENDING``); a context manager."""

    def __init__(self, workdir: Path, env: Mapping[str, str] | None = None) -> None:
        self.workdir = workdir
        self._env = dict(env or {})
        self.gateway_port, self.worker_port = claim(2)
        self.gateway_url = f"http://127.0.0.1:{self.gateway_port}"
        self._child: Child | None = None

    @property
    def ports(self) -> dict[str, int]:
        """The /metrics port of each component, as the chart names components."""
        return {"gateway": self.gateway_port, "worker": self.worker_port}

    def start(self) -> None:
        """Start it and wait until the worker and the gateway answer ``/readyz``.

        Raises:
            StackError: devstack exited (no Kafka, a port taken...) or was not ready in time.
        """
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "GATEWAY_PORT": str(self.gateway_port),
            "GATEWAY_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(self.worker_port),
            "WORKER_METRICS_HOST": "127.0.0.1",
            # A group of its own, should KAFKA_BOOTSTRAP_SERVERS name a cluster others use.
            "WORKER_GROUP_ID": f"monitoring-{uuid.uuid4().hex[:10]}",
            **self._env,
        }
        self._child = Child.spawn(
            "devstack", [sys.executable, "-m", "devstack"], env, self.workdir / "devstack.log"
        )
        try:
            for port in (self.worker_port, self.gateway_port):
                wait_until_ready(f"http://127.0.0.1:{port}/readyz", READY_WITHIN, self._check_running)
        except Exception as error:
            tail = self.log_tail()
            self.stop()
            raise StackError(f"make run's stack did not start: {error}\n{tail}") from error

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C stops ``make run``: gateway, worker, then Kafka. Idempotent."""
        if self._child is not None:
            self._child.stop(STOP_WITHIN)
            self._child = None

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log_tail(self) -> str:
        """The end of devstack's log (Kafka, worker and gateway lines)."""
        return self._child.tail(40) if self._child is not None else ""

    def _check_running(self) -> None:
        if self._child is not None and (code := self._child.process.poll()) is not None:
            raise StackError(f"devstack exited with status {code}")


class Caller:
    """Calls of the stack's gateway, many at once."""

    def __init__(self, gateway_url: str) -> None:
        self.gateway_url = gateway_url

    def burst(self, method: str, body: bytes, count: int, wait: float | None = None) -> list[int]:
        """``count`` concurrent ``POST /rpc/<method>`` (with ``Prefer: wait=<wait>``); their statuses."""
        return asyncio.run(self._burst(method, body, count, wait))

    async def _burst(self, method: str, body: bytes, count: int, wait: float | None) -> list[int]:
        headers = {"content-type": "application/json"}
        if wait is not None:
            headers["prefer"] = f"wait={wait:g}"
        limits = httpx.Limits(max_connections=count)
        async with httpx.AsyncClient(base_url=self.gateway_url, timeout=60, limits=limits) as client:
            responses = await asyncio.gather(
                *(client.post(f"/rpc/{method}", content=body, headers=headers) for _ in range(count))
            )
        return [response.status_code for response in responses]

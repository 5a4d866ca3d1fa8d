"""`Stack`: the processes under test — broker, worker, gateway, the B1 echo server and the floors.

Everything listens on 127.0.0.1. The broker comes from devstack (or the cluster that
``KAFKA_BOOTSTRAP_SERVERS`` names, whose CPU then cannot be measured). Topics carry a
random suffix so runs never read each other's records. Children start in their own
session with a parent-death signal, log to files under a temporary directory, and are
stopped (SIGTERM, then SIGKILL) by `close` or when this process dies. The HTTP floor's
server runs throughout; the Kafka floor's only inside `kafka_floor`, since its consumer
(``fetch.wait.max.ms`` 5) would keep the broker busy during every other step.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition

from devstack import KafkaCluster, kafka_from_environment
from devstack.ports import claim
from devstack.probes import NotReadyError, poll, wait_until_ready
from devstack.process import Child
from devstack.topics import COMPACTED
from kafkarpc.connection import KafkaSettings

from .kafkafloor import KafkaFloorClient

REPO_ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 90.0
BACKLOG_TIMEOUT = 180.0
"""Longest wait for the worker to work off what an overloaded step left behind."""
STOP_GRACE = 20.0
PENDING_GAUGE = "rpcgw_pending_requests"
SECOND_GATEWAY = "second gateway"
SECOND_WORKER = "second worker"
HTTP_FLOOR = "httpfloor"
KAFKA_FLOOR = "kafkafloor"
"""The floors' servers, by the role names their CPU is reported under."""


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


@dataclass
class ServerOptions:
    """How the gateway is launched and configured (the knobs of A/B experiments)."""

    loop: str = "uvloop"
    http: str = "httptools"
    gateway_env: dict[str, str] = field(default_factory=dict)
    worker_env: dict[str, str] = field(default_factory=dict)
    request_headers: dict[str, str] = field(default_factory=dict)
    """Headers every request to the gateway carries (``--jwt``: the bearer token)."""

    @property
    def stock(self) -> bool:
        """Whether ``python -m gateway`` itself can run it (it fixes uvloop and httptools)."""
        return self.loop == "uvloop" and self.http == "httptools"


def environment(items: list[str]) -> dict[str, str]:
    """An environment for `ServerOptions` from ``KEY=VALUE`` command-line arguments."""
    return dict(item.split("=", 1) for item in items)


def add_environment_option(parser: argparse.ArgumentParser, option: str, help_text: str) -> None:
    """A repeatable ``option KEY=VALUE`` on ``parser``, its values read with `environment`."""
    parser.add_argument(option, action="append", default=[], metavar="KEY=VALUE", help=help_text)


class Stack:
    """Starts and stops the processes under test; use as a context manager."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.suffix = uuid.uuid4().hex[:8]
        self.request_topic = f"bench-requests-{self.suffix}"
        self.reply_topic = f"bench-replies-{self.suffix}"
        self.pingpong_topic = f"bench-pingpong-{self.suffix}"
        self.catalog_topic = f"bench-catalog-{self.suffix}"
        self.floor_request_topic = f"bench-floor-requests-{self.suffix}"
        self.floor_reply_topic = f"bench-floor-replies-{self.suffix}"
        self.kafka = kafka_from_environment()
        self.children: dict[str, Child] = {}
        self.gateway_port, self.echo_port, self.worker_port, self.second_port, self.floor_port = claim(5)
        self._logs = Path(tempfile.mkdtemp(prefix="rpcgw-bench-"))

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def kafka_settings(self) -> KafkaSettings:
        """The connection the bench's own Kafka clients use (KAFKA_PROPERTIES applies)."""
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap_servers)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids by role, the broker JVM included when it is ours."""
        pids = {name: child.pid for name, child in self.children.items()}
        if isinstance(self.kafka, KafkaCluster):
            for number, node in enumerate(self.kafka.nodes):
                if node.pid is not None:
                    pids["broker" if number == 0 else f"broker{number}"] = node.pid
        return pids

    def start(self) -> None:
        """Broker, topics, worker, gateway, echo server and HTTP floor, each ready before returning."""
        self.kafka.start()
        self.kafka.create_topics(
            {
                self.request_topic: 1,
                self.reply_topic: 1,
                self.pingpong_topic: 1,
                f"{self.request_topic}.dlt": 1,
                self.floor_request_topic: 1,
                self.floor_reply_topic: 1,
            }
        )
        self.kafka.create_topics({self.catalog_topic: 1}, COMPACTED)
        self._spawn("worker", [sys.executable, "-m", "workers"], self._worker_env())
        self._spawn("gateway", self._gateway_command(self.gateway_port), self._gateway_env(self.gateway_port))
        self._spawn("echo", self._server("echo", self.echo_port), self._base_env())
        http_floor = [sys.executable, "-m", "bench.httpfloor", "serve", "--port", str(self.floor_port)]
        self._spawn(HTTP_FLOOR, http_floor, self._base_env())
        self._wait_ready("worker", f"http://127.0.0.1:{self.worker_port}/readyz")
        self._wait_ready("gateway", f"http://127.0.0.1:{self.gateway_port}/readyz")
        self._wait_ready("echo", f"http://127.0.0.1:{self.echo_port}/healthz")
        self._wait_ready("HTTP floor", f"http://127.0.0.1:{self.floor_port}/healthz")

    @contextlib.contextmanager
    def timed_gateway(self) -> Iterator[tuple[int, int]]:
        """A second gateway with ``GATEWAY_TIMING`` on, for the stage breakdown: (port, pid).

        The main gateway runs as production does, timing off, so no S figure pays for the
        stamps.
        """
        with self.second_gateway({"GATEWAY_TIMING": "true"}) as started:
            yield started

    @contextlib.contextmanager
    def second_gateway(self, env: dict[str, str]) -> Iterator[tuple[int, int]]:
        """A second gateway, configured as the main one plus ``env``: (port, pid).

        It shares the main gateway's topics and reply partition while it runs (each drops the
        other's replies as unmatched) and is stopped when the block ends.
        """
        port = self.second_port
        command, full_env = self._gateway_command(port), {**self._gateway_env(port), **env}
        with self._extra(SECOND_GATEWAY, command, full_env, port) as pid:
            yield port, pid

    @contextlib.contextmanager
    def kafka_floor(self) -> Iterator[int]:
        """The Kafka floor's server (`bench.kafkafloor`) on the floor's topics: its pid.

        Ready once it is positioned at the end of the request topic (it creates a file
        then); stopped when the block ends.
        """
        ready = self._logs / f"{KAFKA_FLOOR}-ready-{uuid.uuid4().hex}"
        command = [
            *(sys.executable, "-m", "bench.kafkafloor", "serve"),
            *("--requests", self.floor_request_topic, "--replies", self.floor_reply_topic),
            *("--ready-file", str(ready)),
        ]
        self._spawn(KAFKA_FLOOR, command, self._base_env())

        def positioned() -> bool:
            self.check_alive()
            return ready.exists()

        try:
            try:
                poll("the Kafka floor's server positioned", positioned, READY_TIMEOUT)
            except NotReadyError as error:
                raise StackError(f"the Kafka floor's server is not ready: {error}") from error
            yield self.children[KAFKA_FLOOR].pid
        finally:
            self.children.pop(KAFKA_FLOOR).stop(STOP_GRACE)

    @contextlib.contextmanager
    def kafka_floor_client(self) -> Iterator[tuple[KafkaFloorClient, int]]:
        """The Kafka floor's server (`kafka_floor`) and a client of it, for the block: (client, pid).

        Both exist only while the floor is measured: their consumers fetch every 5 ms when
        idle, which would load the broker during every other step.
        """
        with self.kafka_floor() as pid:
            client = KafkaFloorClient(self.kafka_settings, self.floor_request_topic, self.floor_reply_topic)
            try:
                yield client, pid
            finally:
                client.close()

    @contextlib.contextmanager
    def second_worker(self, env: dict[str, str]) -> Iterator[tuple[str, int]]:
        """A second worker, configured as the main one plus ``env``, in a group of its own on a
        request topic of its own: (that topic, pid); stopped when the block ends.

        A second gateway with ``GATEWAY_REQUEST_TOPIC`` set to that topic reaches it alone; it
        answers on the main reply topic, like the main worker.
        """
        topic = f"{self.request_topic}-b"
        self.kafka.create_topics({topic: 1, f"{topic}.dlt": 1})
        (port,) = claim(1)
        overrides = {
            "WORKER_GROUP_ID": f"{self._worker_group}-b",
            "WORKER_REQUEST_TOPIC": topic,
            "WORKER_DEAD_LETTER_TOPIC": f"{topic}.dlt",
            "WORKER_METRICS_PORT": str(port),
        }
        command = [sys.executable, "-m", "workers"]
        with self._extra(SECOND_WORKER, command, {**self._worker_env(), **overrides, **env}, port) as pid:
            yield topic, pid

    @contextlib.contextmanager
    def _extra(self, name: str, command: list[str], env: dict[str, str], port: int) -> Iterator[int]:
        """A process started for the block, ready once ``/readyz`` on ``port`` answers: its pid."""
        self._spawn(name, command, env)
        try:
            self._wait_ready(name, f"http://127.0.0.1:{port}/readyz")
            yield self.children[name].pid
        finally:
            self.children.pop(name).stop(STOP_GRACE)

    def close(self) -> None:
        """Stop the gateway first (it drains while the worker still answers), then the rest."""
        for name in (SECOND_GATEWAY, "gateway", KAFKA_FLOOR, HTTP_FLOOR, "echo", SECOND_WORKER, "worker"):
            child = self.children.pop(name, None)
            if child is not None:
                child.stop(STOP_GRACE)
        self.kafka.stop()
        shutil.rmtree(self._logs, ignore_errors=True)

    def check_alive(self) -> None:
        """Raise if a child has exited."""
        for child in self.children.values():
            code = child.process.poll()
            if code is not None:
                raise StackError(f"the {child.name} exited with status {code}:\n{child.tail()}")

    def pending(self) -> int:
        """The gateway's pending-map gauge, read from its /metrics."""
        url = f"http://127.0.0.1:{self.gateway_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith(PENDING_GAUGE + " "):
                return int(float(line.split()[1]))
        raise StackError(f"{PENDING_GAUGE} missing from the gateway's /metrics")

    def wait_for_worker(self) -> None:
        """Return once the worker has committed every request produced so far.

        A step past the worker's capacity leaves requests behind that it still handles (or
        drops as expired) after the step's callers gave up; the next step would measure that
        backlog instead of itself.

        Raises:
            StackError: the worker is still behind after `BACKLOG_TIMEOUT` seconds.
        """
        watcher = Consumer({**self.kafka_settings.client_config(), "group.id": self._worker_group})
        partition = TopicPartition(self.request_topic, 0)

        def caught_up() -> bool:
            self.check_alive()
            _, high = watcher.get_watermark_offsets(partition, timeout=10)
            [committed] = watcher.committed([partition], timeout=10)
            return committed.offset >= high

        try:
            poll("the worker to catch up", caught_up, BACKLOG_TIMEOUT, interval=0.5)
        except NotReadyError as error:
            raise StackError(str(error)) from error
        finally:
            watcher.close()

    @property
    def _worker_group(self) -> str:
        return f"bench-workers-{self.suffix}"

    def _server(self, kind: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.server",
            kind,
            "--port",
            str(port),
            "--loop",
            self.options.loop,
            "--http",
            self.options.http,
        ]

    def _base_env(self) -> dict[str, str]:
        # The repository root on the path, so ``-m bench.server`` works from any directory.
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        return {**os.environ, "PYTHONPATH": path, "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers}

    def _worker_env(self) -> dict[str, str]:
        return {
            **self._base_env(),
            "WORKER_HANDLERS": "workers.examples:registry",
            "WORKER_GROUP_ID": self._worker_group,
            "WORKER_REQUEST_TOPIC": self.request_topic,
            "WORKER_REPLY_TOPICS": f"{self.reply_topic},{self.pingpong_topic}",
            "WORKER_DEAD_LETTER_TOPIC": f"{self.request_topic}.dlt",
            "WORKER_CATALOG_TOPIC": self.catalog_topic,
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(self.worker_port),
            "WORKER_LOG_LEVEL": "WARNING",
            **self.options.worker_env,
        }

    def _gateway_command(self, port: int) -> list[str]:
        if self.options.stock:
            return [sys.executable, "-m", "gateway"]  # the port comes from GATEWAY_PORT
        return self._server("gateway", port)

    def _gateway_env(self, port: int) -> dict[str, str]:
        return {
            **self._base_env(),
            "GATEWAY_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(port),
            "GATEWAY_REQUEST_TOPIC": self.request_topic,
            "GATEWAY_REPLY_TOPIC": self.reply_topic,
            "GATEWAY_CATALOG_TOPIC": self.catalog_topic,
            "GATEWAY_REPLY_PARTITION": "0",
            "GATEWAY_LOG_LEVEL": "WARNING",
            "GATEWAY_AUTH": "none",
            **self.options.gateway_env,
        }

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.children[name] = Child.spawn(name, command, env, self._logs / f"{name}.log")

    def _wait_ready(self, name: str, url: str) -> None:
        try:
            wait_until_ready(url, READY_TIMEOUT, self.check_alive)
        except NotReadyError as error:
            raise StackError(f"the {name} is not ready: {error}") from error

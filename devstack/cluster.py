"""A real Kafka 4.x cluster on loopback: one node for tests and ``make run``, three for faults.

    with KafkaCluster(nodes=1) as kafka:
        kafka.create_topics({"requests": 3, "replies": 3})
        ... kafka.bootstrap_servers ...

Every node is broker and controller (KRaft combined mode) with a static quorum, so one
code path serves both sizes. Data lives in a fresh temporary directory that `stop`
removes; directories left by runs that died are swept at the next start.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import signal
import tempfile
import uuid
from pathlib import Path
from types import TracebackType

from confluent_kafka.admin import AdminClient
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from devstack import java, ports
from devstack.errors import LocalKafkaError
from devstack.jars import broker_classpath
from devstack.node import KafkaNode, NodeSpec
from devstack.topics import create_topics

log = logging.getLogger("devstack")

DATA_PREFIX = "kafka-rpc-gateway-"


class _NotReady(Exception):
    """The cluster answers, but not yet with every broker."""


class KafkaCluster:
    """Starts ``nodes`` KRaft nodes on 127.0.0.1 and stops them, leaving nothing behind."""

    def __init__(self, nodes: int = 1, *, port: int | None = None, startup_timeout: float = 120.0) -> None:
        """Describe a cluster; nothing starts before `start`.

        Args:
            nodes: 1, or 3 for replication factor 3 with ``min.insync.replicas=2``.
            port: the first node's client port; free ports are chosen when None.
            startup_timeout: seconds to wait for every broker to answer metadata.
        """
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.size = nodes
        self._first_port = port
        self._startup_timeout = startup_timeout
        self._directory: Path | None = None
        self.nodes: list[KafkaNode] = []

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` of every node, comma-separated."""
        return ",".join(f"127.0.0.1:{node.spec.port}" for node in self.nodes)

    @property
    def replication_factor(self) -> int:
        """Replication used for topics: 3 on a three-node cluster, else the node count."""
        return min(self.size, 3)

    @property
    def version(self) -> str:
        """The Kafka version the brokers report."""
        return self.nodes[0].version() or "unknown"

    def start(self) -> None:
        """Resolve jars, format, start every node and wait until all answer.

        Raises:
            LocalKafkaError: naming the cause (Java, Maven, a port in use, a broker that died).
        """
        _sweep_stale_directories()
        java_binary = java.find()
        classpath = broker_classpath()
        client_ports = ports.claim(self.size, first=self._first_port)
        controller_ports = ports.claim(self.size)
        self._directory = Path(tempfile.mkdtemp(prefix=DATA_PREFIX))
        (self._directory / "owner.pid").write_text(str(os.getpid()))
        voters = ",".join(f"{n + 1}@127.0.0.1:{p}" for n, p in enumerate(controller_ports))
        cluster_id = _cluster_id()
        self.prepare(self._directory)
        for index in range(self.size):
            spec = NodeSpec(
                index + 1, client_ports[index], controller_ports[index], self._directory / f"node{index + 1}"
            )
            node = KafkaNode(spec, self.node_properties(spec, voters), java_binary, classpath)
            node.format(cluster_id, self.format_arguments())
            self.nodes.append(node)
        try:
            for node in self.nodes:
                node.start()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Kafka %s is up at %s (%d node(s), KRaft)", self.version, self.bootstrap_servers, self.size)

    def stop(self, grace: float = 15.0) -> None:
        """Stop every node (SIGTERM, SIGKILL after ``grace``) and delete the data. Idempotent."""
        for node in self.nodes:
            node.terminate()
        for node in self.nodes:
            node.wait(grace)
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
        self.nodes = []

    def create_topics(self, topics: dict[str, int], config: dict[str, str] | None = None) -> None:
        """Create topics with the given partition counts; existing ones are left alone."""
        create_topics(
            self.bootstrap_servers, topics, self.replication_factor, config, self.admin_properties()
        )

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    def node_properties(self, spec: NodeSpec, voters: str) -> dict[str, str]:
        """``server.properties`` of one node; subclasses may add listeners (fault-injection proxies)."""
        replicas = str(self.replication_factor)
        min_isr = str(min(self.replication_factor, 2))
        return {
            "process.roles": "broker,controller",
            "node.id": str(spec.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{spec.port},CONTROLLER://127.0.0.1:{spec.controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{spec.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(spec.directory / "data"),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            # Fewer partitions than the default 50: the first consumer group starts faster.
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "false",
            # Two cores: the defaults (3 network, 8 io threads) only oversubscribe them.
            "num.network.threads": "2",
            "num.io.threads": "2",
        }

    def prepare(self, directory: Path) -> None:
        """Called once before the nodes are formatted, with the cluster's fresh data directory."""

    def format_arguments(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments for every node (none here)."""
        return []

    def admin_properties(self) -> dict[str, str]:
        """librdkafka properties devstack's own admin clients add to ``bootstrap.servers`` (none here)."""
        return {}

    def _wait_until_ready(self) -> None:
        # log_level 0: refused connections while the JVM boots are expected, not news.
        admin = AdminClient(
            {"bootstrap.servers": self.bootstrap_servers, "log_level": 0, **self.admin_properties()}
        )
        for attempt in Retrying(
            stop=stop_after_delay(self._startup_timeout),
            wait=wait_fixed(0.25),
            retry=retry_if_exception_type(_NotReady),
            reraise=True,
        ):
            with attempt:
                self._raise_if_a_node_died()
                try:
                    brokers = admin.list_topics(timeout=2).brokers
                except Exception as error:
                    raise _NotReady(str(error)) from error
                if len(brokers) < self.size or any(node.version() is None for node in self.nodes):
                    raise _NotReady(f"{len(brokers)} of {self.size} brokers registered")

    def _raise_if_a_node_died(self) -> None:
        for node in self.nodes:
            code = node.exit_code()
            if code is not None:
                raise LocalKafkaError(
                    f"Kafka node {node.spec.node_id} exited with status {code} during start-up; "
                    f"its log ({node.log_path}) ends with:\n{node.log_tail()}"
                )


def _cluster_id() -> str:
    # KRaft cluster ids are 16 random bytes in URL-safe base64 without padding, the same
    # thing `StorageTool random-uuid` prints, without a JVM start. Like Kafka's own
    # Uuid.randomUuid, redraw ids that start with "-": the tool's parser takes them for an
    # option (1 draw in 64 did, and failed the start).
    while True:
        candidate = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def _sweep_stale_directories() -> None:
    """Remove data directories (and kill JVMs) left behind by runs whose owner died."""
    for directory in Path(tempfile.gettempdir()).glob(f"{DATA_PREFIX}*"):
        owner = _read_pid(directory / "owner.pid")
        if owner is not None and _alive(owner):
            continue
        for pid_file in directory.glob("node*/broker.pid"):
            pid = _read_pid(pid_file)
            if pid is not None and _is_broker(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def _is_broker(pid: int) -> bool:
    # The pid may have been reused since: only kill a process that is a Kafka JVM.
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

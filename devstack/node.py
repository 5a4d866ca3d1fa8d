"""One Apache Kafka KRaft node (broker and controller in one JVM) as a child process.

The JVM runs in its own session, so a Ctrl-C in the terminal reaches only the parent,
which stops the brokers in order; and it carries a parent-death signal, so it dies
with the Python process that started it even when that process is SIGKILLed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import LocalKafkaError
from devstack.process import Child

LOG4J_CONFIG = Path(__file__).with_name("log4j2.properties")
_VERSION_LINE = re.compile(r"Kafka version: (\S+)")


@dataclass(frozen=True)
class NodeSpec:
    """Where one node listens and keeps its data."""

    node_id: int
    """KRaft node id, 1-based."""
    port: int
    """Client (PLAINTEXT) listener on 127.0.0.1."""
    controller_port: int
    """KRaft controller listener on 127.0.0.1."""
    directory: Path
    """Holds ``server.properties``, ``data/`` and ``broker.log``."""


class KafkaNode:
    """Formats, starts, signals and stops one node; restartable on the same data."""

    def __init__(self, spec: NodeSpec, properties: dict[str, str], java: str, classpath: str) -> None:
        self.spec = spec
        self._properties = properties
        self._java = java
        self._classpath = classpath
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The node's combined stdout and stderr."""
        return self.spec.directory / "broker.log"

    @property
    def running(self) -> bool:
        """Whether the JVM is alive (a paused one counts as running)."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    def format(self, cluster_id: str, arguments: Sequence[str] = ()) -> None:
        """Write ``server.properties`` and format the data directory for ``cluster_id``.

        ``arguments`` go to ``kafka-storage format`` as they are (``--add-scram ...``).
        """
        self.spec.directory.mkdir(parents=True, exist_ok=True)
        config = self.spec.directory / "server.properties"
        config.write_text("".join(f"{key}={value}\n" for key, value in self._properties.items()))
        result = subprocess.run(
            [
                self._java,
                "-cp",
                self._classpath,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(config),
                *arguments,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise LocalKafkaError(
                f"formatting node {self.spec.node_id} failed: {(result.stdout + result.stderr).strip()}"
            )

    def start(self) -> None:
        """Start the JVM on the formatted directory (again, after `stop` or `kill`)."""
        if self.running:
            return
        heap = os.environ.get("LOCAL_KAFKA_HEAP", "1g")
        command = [
            self._java,
            f"-Xmx{heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            "-cp",
            self._classpath,
            "kafka.Kafka",
            str(self.spec.directory / "server.properties"),
        ]
        self._process = Child.spawn(
            f"kafka-{self.spec.node_id}", command, None, self.log_path, append=True
        ).process
        (self.spec.directory / "broker.pid").write_text(str(self._process.pid))

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM (a controlled shutdown), then SIGKILL once ``grace`` seconds pass."""
        self.terminate()
        self.wait(grace)

    def terminate(self) -> None:
        """Ask the JVM to shut down without waiting; see `wait`."""
        self.send(signal.SIGCONT)  # a paused JVM cannot act on SIGTERM
        self.send(signal.SIGTERM)

    def wait(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the JVM to exit, then SIGKILL it."""
        if self._process is None:
            return
        try:
            self._process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: a crash, as fault tests want it."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def send(self, signum: signal.Signals) -> None:
        """Send a signal (SIGSTOP/SIGCONT for pauses) if the JVM runs."""
        if self.running and self._process is not None:
            self._process.send_signal(signum)

    def exit_code(self) -> int | None:
        """The JVM's exit status once it has exited."""
        return None if self._process is None else self._process.poll()

    def version(self) -> str | None:
        """The Kafka version the broker printed at start, once it has."""
        if not self.log_path.exists():
            return None
        match = _VERSION_LINE.search(self.log_path.read_text(errors="replace"))
        return match.group(1) if match else None

    def log_tail(self, lines: int = 25) -> str:
        """The last lines of the broker log, for error messages."""
        if not self.log_path.exists():
            return "(no broker log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

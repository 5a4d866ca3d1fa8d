"""Helpers for the worker integration tests on a real broker: requests, replies, worker processes."""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from devstack.ports import claim
from devstack.probes import metric_total
from devstack.process import Child
from kafkarpc.protocol import Reply, Request

# Low session timeout (the broker's minimum is 6 s) so a killed worker's partitions move quickly.
TEST_KAFKA_PROPERTIES = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "statistics.interval.ms": 1000,
}
ROOT = Path(__file__).resolve().parents[2]


def eventually(
    check: Callable[[], bool], timeout: float, what: str, step: Callable[[], None] | None = None
) -> None:
    """Poll observable state until ``check()`` holds; ``step`` does the waiting (e.g. a consume)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        if step is not None:
            step()
        else:
            time.sleep(0.05)  # polling an external process's state with a deadline


def never(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Watch observable state for ``seconds`` (a measurement window) and fail if ``check()`` holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            raise AssertionError(f"{what} within {seconds} s")
        time.sleep(0.05)


def make_request(method: str, body: bytes, reply_to: str, *, deadline_in: float = 60.0) -> Request:
    """A well-formed request with a fresh correlation id."""
    return Request(
        correlation_id=uuid.uuid4().hex,
        reply_to=reply_to,
        reply_partition=0,
        method=method,
        deadline_ms=int((time.time() + deadline_in) * 1000),
        body=body,
        content_type="application/json",
    )


class Requester:
    """Produces requests (and raw records) to the requests topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})

    def send(self, requests: Iterable[Request], partition: int | None = None) -> None:
        for request in requests:
            self.raw(request.body, [*request.headers()], request.correlation_id.encode(), partition)
        assert self.producer.flush(30) == 0

    def raw(
        self,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
        key: bytes | None,
        partition: int | None,
    ) -> None:
        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        self.producer.produce(self.topic, value=value, key=key, headers=headers, **extra)
        self.producer.poll(0)


class RecordReader:
    """Reads a topic from the beginning without a group."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 1) -> None:
        self.consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        self.records: list[Any] = []

    def poll(self) -> None:
        self.records.extend(m for m in self.consumer.consume(500, 0.2) if m.error() is None)

    def step(self) -> None:
        """Take at most one record, waiting at most 50 ms: for a reader that must see each at once."""
        record = self.consumer.poll(0.05)
        if record is not None and record.error() is None:
            self.records.append(record)

    def replies(self) -> dict[str, list[Reply]]:
        found: dict[str, list[Reply]] = {}
        for record in self.records:
            reply = Reply.from_record(record.value(), record.headers())
            found.setdefault(reply.correlation_id, []).append(reply)
        return found

    def close(self) -> None:
        self.consumer.close()


class WorkerProcess:
    """``python -m workers`` in a subprocess with its own monitoring port and log file."""

    def __init__(
        self, bootstrap: str, env: dict[str, str], handlers: str = "workers.examples:registry"
    ) -> None:
        self.port = claim(1)[0]
        self.log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])
        full_env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_PROPERTIES": orjson.dumps(TEST_KAFKA_PROPERTIES).decode(),
            "WORKER_METRICS_HOST": "127.0.0.1",
            "WORKER_METRICS_PORT": str(self.port),
            "WORKER_CATALOG_TOPIC": "",  # these tests watch requests and replies, not the catalog
            **env,
        }
        command = [sys.executable, "-m", "workers", "--handlers", handlers]
        self.process = Child.spawn("worker", command, full_env, self.log, cwd=ROOT).process

    def get(self, path: str) -> httpx.Response | None:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2)
        except httpx.HTTPError:
            return None

    def ready(self) -> bool:
        response = self.get("/readyz")
        return response is not None and response.status_code == 200

    def metric(self, sample: str) -> float:
        """The value of one sample line, e.g. ``rpcworker_in_flight`` or ``x_total{a="b"}``; 0 if absent."""
        response = self.get("/metrics")
        assert response is not None, self.output()
        for line in response.text.splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return 0.0

    def handled(self) -> float:
        response = self.get("/metrics")
        assert response is not None, self.output()
        return metric_total(response.text, "rpcworker_handled_total")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.unlink(missing_ok=True)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """The group's committed offsets of ``topic`` (negative when none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in found]
    finally:
        consumer.close()

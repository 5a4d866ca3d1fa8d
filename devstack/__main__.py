"""``make run``: the whole system on this machine, stopped by Ctrl-C.

Starts a real Kafka broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names one), creates
the topics, starts one worker with the example handlers and one gateway, waits until
the gateway is ready and prints a ``curl`` that gets a real reply. Ctrl-C (or
SIGTERM) stops the gateway, then the worker, then Kafka.

``DEVSTACK_SECURED=1`` starts the local broker secured instead (`devstack.secured`:
SASL_SSL, SCRAM-SHA-512, ACLs), and the worker and the gateway each run as their own
principal with only the grants of `devstack.acls`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from functools import partial

from devstack import acls
from devstack.cluster import KafkaCluster
from devstack.errors import LocalKafkaError
from devstack.existing import ExistingKafka, kafka_from_environment
from devstack.probes import wait_until_ready
from devstack.process import Child
from devstack.secured import SecuredKafkaCluster
from devstack.signals import wait_in_slices
from devstack.topics import COMPACTED
from kafkarpc.logs import configure_logging

log = logging.getLogger("devstack")

# Topic names and partition counts; the gateway and worker defaults use the same names.
TOPICS = {"requests": 6, "replies": 4, "requests.dlt": 1}
CATALOG_TOPIC = "rpc-catalog"
EXAMPLE_HANDLERS = "workers.examples:registry"
GRACE_SECONDS = 30.0
READY_TIMEOUT = 60.0


def main() -> int:
    """Run the stack until interrupted; the exit status says whether it started."""
    configure_logging("INFO")  # the gateway's and worker's format: short lines on a terminal
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    kafka = _kafka()
    children: list[Child] = []
    try:
        kafka.start()
        kafka.create_topics(TOPICS)
        kafka.create_topics({CATALOG_TOPIC: 1}, COMPACTED)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
        port = env.setdefault("GATEWAY_PORT", "8080")
        env.setdefault("GATEWAY_AUTH", "none")  # a laptop demo; the gateway logs the warning
        worker_port = env.setdefault("WORKER_METRICS_PORT", "9090")
        worker_env, gateway_env = (
            _principals(kafka, env) if isinstance(kafka, SecuredKafkaCluster) else (env, env)
        )
        worker = [sys.executable, "-m", "workers", "--handlers", EXAMPLE_HANDLERS]
        children.append(Child.spawn("worker", worker, worker_env))
        children.append(Child.spawn("gateway", [sys.executable, "-m", "gateway"], gateway_env))
        # Both ready: the gateway's reply consumer is positioned and the worker owns partitions.
        for url in (f"http://127.0.0.1:{worker_port}/readyz", f"http://127.0.0.1:{port}/readyz"):
            wait_until_ready(url, READY_TIMEOUT, partial(_check, children, stop))
        _watch(children, stop)
        # Printed once everything runs, watchers included: the line callers wait for.
        print(_banner(port, kafka.bootstrap_servers), flush=True)
        # Not stop.wait(): with the watchers blocked in waitpid, a signal the kernel hands to one
        # of them would never reach its handler here (see devstack.signals).
        wait_in_slices(stop.wait)
        _raise_if_exited(children)
    except LocalKafkaError as error:
        log.error("cannot start: %s", error)
        return 1
    finally:
        # Gateway first, so it drains while workers still answer; Kafka last.
        for child in reversed(children):
            _stop(child)
        kafka.stop()
        log.info("stopped")
    return 0


def _kafka() -> KafkaCluster | ExistingKafka:
    """A secured local broker with ``DEVSTACK_SECURED=1``, else the one the environment names."""
    if os.environ.get("DEVSTACK_SECURED") != "1":
        return kafka_from_environment()
    port = os.environ.get("LOCAL_KAFKA_PORT")
    return SecuredKafkaCluster(port=int(port) if port else None)


def _principals(kafka: SecuredKafkaCluster, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The worker's and the gateway's environments: each its own user, granted its ACL row only."""
    worker, gateway = kafka.add_user("worker"), kafka.add_user("gateway")
    kafka.grant(
        acls.worker(
            worker.principal,
            group=env.get("WORKER_GROUP_ID", "rpc-workers"),
            requests="requests",
            replies=["replies"],
            dead_letter="requests.dlt",
            catalog=CATALOG_TOPIC,
        )
        + acls.gateway(gateway.principal, requests="requests", replies="replies", catalog=CATALOG_TOPIC)
    )
    log.info("Kafka is secured (SASL_SSL, SCRAM-SHA-512, ACLs): worker and gateway run as users of their own")
    return {**env, **kafka.environment(worker)}, {**env, **kafka.environment(gateway)}


def _check(children: list[Child], stop: threading.Event) -> None:
    _raise_if_exited(children)
    if stop.is_set():
        raise LocalKafkaError("interrupted before the system was ready")


def _watch(children: list[Child], stop: threading.Event) -> None:
    # A watcher thread per child turns "a child exited" into the same event as Ctrl-C.
    for child in children:
        threading.Thread(target=_set_when_exited, args=(child.process, stop), daemon=True).start()


def _set_when_exited(child: subprocess.Popen[bytes], stop: threading.Event) -> None:
    child.wait()
    stop.set()


def _raise_if_exited(children: list[Child]) -> None:
    for child in children:
        code = child.process.poll()
        if code is not None:
            raise LocalKafkaError(f"the {child.name} exited with status {code}; its log is above")


def _stop(child: Child) -> None:
    if child.process.poll() is None and child.stop(GRACE_SECONDS) == -signal.SIGKILL:
        log.warning("%s did not stop within %.0f s and was killed", child.name, GRACE_SECONDS)


def _banner(port: str, bootstrap_servers: str) -> str:
    return f"""
Kafka RPC Gateway is running: gateway http://127.0.0.1:{port}, Kafka {bootstrap_servers}.
Try it:

  curl -s http://127.0.0.1:{port}/rpc/echo -H 'content-type: application/json' -d '{{"hello": "kafka"}}'

API docs: http://127.0.0.1:{port}/docs   Metrics: http://127.0.0.1:{port}/metrics   Stop: Ctrl-C
"""


if __name__ == "__main__":
    sys.exit(main())

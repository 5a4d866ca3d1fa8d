"""``make run``: the whole system on this machine, stopped by Ctrl-C.

Starts a real Kafka broker (unless ``KAFKA_BOOTSTRAP_SERVERS`` names one), creates
the topics, starts one worker with the example handlers and one gateway, waits until
the gateway is ready and prints a ``curl`` that gets a real reply. Ctrl-C (or
SIGTERM) stops the gateway, then the worker, then Kafka.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from devstack.errors import LocalKafkaError
from devstack.existing import kafka_from_environment
from devstack.process import die_with_parent

log = logging.getLogger("devstack")

# Topic names and partition counts; the gateway and worker defaults use the same names.
TOPICS = {"requests": 6, "replies": 4, "requests.dlt": 1}
EXAMPLE_HANDLERS = "workers.examples:registry"
GRACE_SECONDS = 30.0


class _NotReady(Exception):
    """A ``/readyz`` does not answer 200 yet."""


def main() -> int:
    """Run the stack until interrupted; the exit status says whether it started."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s devstack %(message)s", stream=sys.stderr)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    kafka = kafka_from_environment()
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        kafka.start()
        kafka.create_topics(TOPICS)
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
        port = env.setdefault("GATEWAY_PORT", "8080")
        worker_port = env.setdefault("WORKER_METRICS_PORT", "9090")
        children.append(
            ("worker", _spawn([sys.executable, "-m", "workers", "--handlers", EXAMPLE_HANDLERS], env))
        )
        children.append(("gateway", _spawn([sys.executable, "-m", "gateway"], env)))
        # Both ready: the gateway's reply consumer is positioned and the worker owns partitions.
        for url in (f"http://127.0.0.1:{worker_port}/readyz", f"http://127.0.0.1:{port}/readyz"):
            _wait_until_ready(url, children, stop)
        print(_banner(port, kafka.bootstrap_servers), flush=True)
        _wait_for_stop_or_exit(children, stop)
    except LocalKafkaError as error:
        log.error("cannot start: %s", error)
        return 1
    finally:
        # Gateway first, so it drains while workers still answer; Kafka last.
        for name, child in reversed(children):
            _stop(name, child)
        kafka.stop()
        log.info("stopped")
    return 0


def _spawn(command: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    # A session of its own: Ctrl-C reaches only this parent, which stops children in order.
    return subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509 (main thread)


def _wait_until_ready(
    url: str, children: list[tuple[str, subprocess.Popen[bytes]]], stop: threading.Event
) -> None:
    for attempt in Retrying(
        stop=stop_after_delay(60),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type(_NotReady),
        reraise=True,
    ):
        with attempt:
            _raise_if_exited(children)
            if stop.is_set():
                raise LocalKafkaError("interrupted before the system was ready")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback URL we built)
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as error:
                raise _NotReady(str(error)) from error
            raise _NotReady(url)


def _wait_for_stop_or_exit(
    children: list[tuple[str, subprocess.Popen[bytes]]], stop: threading.Event
) -> None:
    # A watcher thread per child turns "a child exited" into the same event as Ctrl-C.
    for _, child in children:
        threading.Thread(target=_set_when_exited, args=(child, stop), daemon=True).start()
    stop.wait()
    _raise_if_exited(children)


def _set_when_exited(child: subprocess.Popen[bytes], stop: threading.Event) -> None:
    child.wait()
    stop.set()


def _raise_if_exited(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for name, child in children:
        code = child.poll()
        if code is not None:
            raise LocalKafkaError(f"the {name} exited with status {code}; its log is above")


def _stop(name: str, child: subprocess.Popen[bytes]) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", name, GRACE_SECONDS)
            child.kill()
            child.wait()


def _banner(port: str, bootstrap_servers: str) -> str:
    return f"""
Kafka RPC Gateway is running: gateway http://127.0.0.1:{port}, Kafka {bootstrap_servers}.
Try it:

  curl -s http://127.0.0.1:{port}/rpc/echo -H 'content-type: application/json' -d '{{"hello": "kafka"}}'

Metrics: http://127.0.0.1:{port}/metrics   Stop: Ctrl-C
"""


if __name__ == "__main__":
    sys.exit(main())

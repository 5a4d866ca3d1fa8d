"""SIGTERM and SIGINT stop each long-running entry point, whichever of its threads receives them.

The kernel hands a process-directed signal to any thread that does not block it, and
CPython runs Python handlers in the main thread only (see `devstack.signals`). So besides
plain ``kill``, every case here directs the signal at one non-main thread with ``tgkill``:
in turn at each thread that does not block it (``SigBlk`` in ``/proc/<pid>/task/<tid>/status``;
librdkafka's threads block every signal, and one directed at them would stay pending), one
fresh process per thread and signal. The process must then exit cleanly within `EXIT_WITHIN`.

Plain signals to ``python -m devstack`` follow, and last the pattern ``python -m chaos`` runs
scenarios with (``asyncio.run``, work in ``asyncio.to_thread``) under `waking_on_signals`.
The gateway and the worker are spawned as ``python -m`` processes only, never imported.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import ExistingKafka, KafkaCluster
from devstack.ports import claim
from devstack.probes import wait_until_ready
from devstack.process import die_with_parent
from devstack.topics import COMPACTED

Kafka = KafkaCluster | ExistingKafka
READY_WITHIN = 60.0
EXIT_WITHIN = 15.0
"""Generous for a loaded machine: each stops in about a second; a missed signal never stops it."""
ROUNDS = 6
"""Plain process-directed signals to ``python -m devstack``, one fresh process (~1.7 s) per round.

The kernel gives those to the main thread when it is free, so more rounds add time, not cover:
the ``tgkill`` cases are the ones that reach every thread.
"""
BANNER_END = b"Stop: Ctrl-C"
SIGNALS = [signal.SIGTERM, signal.SIGINT]
_LIBC = ctypes.CDLL(None, use_errno=True)


def tgkill(pid: int, tid: int, signum: int) -> None:
    """Send ``signum`` to thread ``tid`` of process ``pid`` only."""
    if _LIBC.tgkill(pid, tid, signum) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def unblocked_threads(pid: int, signum: int) -> list[int]:
    """Ids of ``pid``'s threads other than the main one that do not block ``signum``, oldest first."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # exited since the listing: nothing to signal
        blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:")).split()[1], 16)
        if int(task.name) != pid and not blocked >> (signum - 1) & 1:
            found.append(int(task.name))
    return sorted(found)


def wait_until_main_thread_sleeps(pid: int) -> None:
    """Spin until ``pid``'s main thread is asleep (state S): in its wait, not on the way there.

    A signal on another thread while the main thread still runs Python code is handled at
    its next bytecode whatever follows, so a case sent then could pass for a broken wait.
    """
    stat = Path(f"/proc/{pid}/task/{pid}/stat")
    deadline = time.monotonic() + READY_WITHIN
    while stat.read_text().rsplit(")", 1)[1].split()[0] != "S":
        assert time.monotonic() < deadline, f"the main thread of {pid} never went to sleep"
        os.sched_yield()


def thread_name(pid: int, tid: int) -> str:
    """The thread's name (librdkafka, libuv and the JVM name theirs; Python 3.11 does not)."""
    try:
        return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
    except OSError:
        return "exited"


@dataclass
class Running:
    """A started entry point and where its log goes."""

    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        """The end of its log, for failure messages."""
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-25:])

    def read_until(self, marker: bytes) -> None:
        """Read its stdout (a pipe) until ``marker`` appears."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        seen = b""
        deadline = time.monotonic() + READY_WITHIN
        while marker not in seen:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            assert readable, f"not ready within {READY_WITHIN:g} s; its log ends:\n{self.tail()}"
            chunk = os.read(fd, 65536)
            assert chunk, f"exited with status {self.process.wait()} before it was ready:\n{self.tail()}"
            seen += chunk

    def assert_exits(self, code: int, after: str) -> None:
        """It exits with ``code`` within `EXIT_WITHIN` seconds."""
        try:
            exited = self.process.wait(timeout=EXIT_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {EXIT_WITHIN:g} s after {after}; its log ends:\n{self.tail()}")
        assert exited == code, f"exit status {exited} after {after}; its log ends:\n{self.tail()}"


@dataclass(frozen=True)
class EntryPoint:
    """How to start one entry point until it is ready, and its exit status on a clean stop."""

    start: Callable[[], Running]
    clean_exit: dict[int, int]


@pytest.fixture(scope="module")
def topics(kafka: Kafka) -> dict[str, str]:
    """Topics of this module's gateways and workers, as their environment names them."""
    unique = uuid.uuid4().hex[:10]
    requests, replies = f"signals-requests-{unique}", f"signals-replies-{unique}"
    kafka.create_topics({requests: 1, replies: 1, f"{requests}.dlt": 1})
    kafka.create_topics({f"signals-catalog-{unique}": 1}, COMPACTED)
    return {
        "GATEWAY_REQUEST_TOPIC": requests,
        "GATEWAY_REPLY_TOPIC": replies,
        "GATEWAY_CATALOG_TOPIC": f"signals-catalog-{unique}",
        "WORKER_CATALOG_TOPIC": f"signals-catalog-{unique}",
        "WORKER_REQUEST_TOPIC": requests,
        "WORKER_REPLY_TOPICS": replies,
        "WORKER_DEAD_LETTER_TOPIC": f"{requests}.dlt",
    }


class Processes:
    """The processes one test starts, each logging to a file of its own; `close` kills any left."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[Running] = []

    def spawn(self, command: list[str], env: dict[str, str] | None = None, *, pipe: bool = False) -> Running:
        """Start ``command``; its stdout is a pipe to read with `read_until` if ``pipe``, else the log."""
        log = self._directory / f"{len(self._started)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe else sink,
                stderr=sink,
                start_new_session=True,  # no stray terminal signal reaches it
                preexec_fn=die_with_parent,  # noqa: PLW1509 - an interrupted run leaves nothing behind
            )
        running = Running(process, log)
        self._started.append(running)
        return running

    def close(self) -> None:
        """Kill and reap whatever still runs."""
        for running in self._started:
            if running.process.poll() is None:
                running.process.kill()
                running.process.wait()
            if running.process.stdout is not None:
                running.process.stdout.close()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """This test's processes, none left running after it."""
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def entry_points(kafka: Kafka, topics: dict[str, str], processes: Processes) -> dict[str, EntryPoint]:
    """``python -m devstack`` (``make run``) on the session's broker, ``python -m gateway`` and
    ``python -m workers``, each on free ports with a consumer group of its own."""

    def environment(**extra: str) -> dict[str, str]:
        return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, **extra}

    def devstack() -> Running:
        gateway_port, worker_port = claim(2)
        env = environment(
            GATEWAY_PORT=str(gateway_port),
            WORKER_METRICS_PORT=str(worker_port),
            WORKER_GROUP_ID=f"signals-devstack-{uuid.uuid4().hex[:10]}",
        )
        running = processes.spawn([sys.executable, "-m", "devstack"], env, pipe=True)
        running.read_until(BANNER_END)
        return running

    def served(module: list[str], port_variable: str) -> Running:
        port = claim(1)[0]
        env = environment(
            **topics,
            **{port_variable: str(port)},
            GATEWAY_HOST="127.0.0.1",
            GATEWAY_AUTH="none",
            WORKER_METRICS_HOST="127.0.0.1",
            WORKER_GROUP_ID=f"signals-workers-{uuid.uuid4().hex[:10]}",
        )
        running = processes.spawn([sys.executable, "-m", *module], env)

        def check() -> None:
            code = running.process.poll()
            assert code is None, f"exited with status {code} before it was ready:\n{running.tail()}"

        wait_until_ready(f"http://127.0.0.1:{port}/readyz", READY_WITHIN, check)
        return running

    term, interrupt = signal.SIGTERM, signal.SIGINT
    return {
        "devstack": EntryPoint(devstack, {term: 0, interrupt: 0}),
        # uvicorn re-raises the signal it handled once it has shut down.
        "gateway": EntryPoint(
            lambda: served(["gateway"], "GATEWAY_PORT"), {term: -term, interrupt: -interrupt}
        ),
        "worker": EntryPoint(
            lambda: served(["workers", "--handlers", "workers.examples:registry"], "WORKER_METRICS_PORT"),
            {term: 0, interrupt: 0},
        ),
    }


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
@pytest.mark.parametrize("name", ["devstack", "gateway", "worker"])
def test_a_signal_on_any_thread_stops_it(
    name: str, signum: signal.Signals, entry_points: dict[str, EntryPoint]
) -> None:
    entry = entry_points[name]

    def start() -> tuple[Running, list[int]]:
        running = entry.start()
        wait_until_main_thread_sleeps(running.process.pid)
        return running, unblocked_threads(running.process.pid, signum)

    running, threads = start()
    count = len(threads)
    # Without such a thread this case would prove nothing; if one is gone for good, drop the case.
    assert count > 0, f"{name} has no thread besides the main one that takes {signum.name}"
    for index in range(count):
        if index > 0:
            running, threads = start()
            # They start in the same order every time, and ids grow with it: same index, same thread.
            assert len(threads) == count, f"{name} has {len(threads)} such threads this time, not {count}"
        pid, target = running.process.pid, threads[index]
        description = f"thread {index + 1} of {count} ({thread_name(pid, target)})"
        tgkill(pid, target, signum)
        running.assert_exits(entry.clean_exit[signum], f"{signum.name} to {name}'s {description}")


def test_devstack_stops_on_every_plain_signal(entry_points: dict[str, EntryPoint]) -> None:
    entry = entry_points["devstack"]
    for round_number in range(ROUNDS):
        signum = SIGNALS[round_number % len(SIGNALS)]
        running = entry.start()
        running.process.send_signal(signum)
        running.assert_exits(entry.clean_exit[signum], f"{signum.name} in round {round_number + 1}")


ASYNCIO_RUN = """
import asyncio, threading
from devstack.signals import waking_on_signals

async def main():
    release = threading.Event()
    def block():
        print("ready", flush=True)  # this pool thread now exists
        release.wait()
    async with waking_on_signals():
        try:
            await asyncio.to_thread(block)
        finally:
            release.set()

asyncio.run(main())
"""


def test_asyncio_run_acts_on_a_ctrl_c_that_lands_on_a_pool_thread(processes: Processes) -> None:
    # How chaos runs a scenario: asyncio.run's own SIGINT handler, a call in asyncio.to_thread.
    running = processes.spawn([sys.executable, "-c", ASYNCIO_RUN], pipe=True)
    running.read_until(b"ready")
    pid = running.process.pid
    wait_until_main_thread_sleeps(pid)
    (pool_thread,) = unblocked_threads(pid, signal.SIGINT)
    tgkill(pid, pool_thread, signal.SIGINT)
    running.assert_exits(-signal.SIGINT, "SIGINT to its pool thread")

"""`RemotePingPong`: B2's open loop in a child process, to run alongside load from this one.

The baselines side by side (B1 ∥ B2, `bench.suite`) need both at once: the HTTP load
generator on this process's event loop and the Kafka ping-pong on a core of its own, so
neither client's work is serialised behind the other's GIL. The child is spawned (no fork
of librdkafka's threads), builds its own `PingPong` and then waits on a pipe; each order
runs one open loop that only waits in ``poll()``, from a time zero this process chose, and
the `Step` comes back pickled. Between orders the child is idle, so its CPU over a step (sampled from
``/proc/<pid>`` by the caller) is that step's B2 client CPU.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

from devstack.signals import wait_in_slices
from kafkarpc.connection import KafkaSettings

from .pingpong import DEADLINE_SECONDS, PingPong
from .step import Step

CONTEXT = multiprocessing.get_context("spawn")
READY_TIMEOUT = 60.0
"""Interpreter start, imports and the clients' metadata; generous for a loaded machine."""
RESULT_GRACE = 30.0
"""Beyond the step's own length and reply deadline, before the child counts as hung."""
STOP_TIMEOUT = 10.0


class RemotePingPong:
    """A `PingPong` in a spawned child; a context manager that stops it on exit."""

    def __init__(self, kafka: KafkaSettings, request_topic: str, reply_topic: str) -> None:
        self._pipe, child_end = CONTEXT.Pipe()
        self._process = CONTEXT.Process(
            target=_serve,
            args=(child_end, kafka, request_topic, reply_topic),
            name="bench-pingpong",
            daemon=True,  # killed at exit should `close` never run
        )
        self._process.start()
        child_end.close()  # only the child holds it now: its exit reads as EOF here
        self._length = 0.0
        try:
            self.exchanges: int = self._receive(READY_TIMEOUT)
            """Requests the child has sent, as of its last answer (the denominator of CPU per request)."""
        except BaseException:
            self.close(graceful=False)
            raise

    @property
    def pid(self) -> int:
        """The child's process id, for `bench.cpu.CpuMeter`."""
        assert self._process.pid is not None  # started in __init__
        return self._process.pid

    def __enter__(self) -> RemotePingPong:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(graceful=kind is None)

    def close(self, *, graceful: bool = True) -> None:
        """Ask the child to close its clients and exit; kill it if it does not, or if not ``graceful``."""
        if graceful and self._process.is_alive():
            with contextlib.suppress(OSError):  # it already went; join reaps it
                self._pipe.send(None)
            _join(self._process, STOP_TIMEOUT)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._pipe.close()

    def start_open_loop(self, rate: float, seconds: float, warmup: float, at: float) -> None:
        """Start `PingPong.open_loop` (not precise) in the child with time zero ``at``."""
        self._length = warmup + seconds
        self._pipe.send((rate, seconds, warmup, at))

    def result(self) -> Step:
        """Wait for the step started by `start_open_loop`."""
        step, self.exchanges = self._receive(self._length + DEADLINE_SECONDS + RESULT_GRACE)
        assert isinstance(step, Step)
        return step

    def _receive(self, timeout: float) -> Any:
        # In slices: a Ctrl-C may land on a thread of the event loop's pools (they do not block
        # signals), and only the main thread, waiting here, can run its handler.
        if not wait_in_slices(self._pipe.poll, timeout):
            raise TimeoutError(f"the ping-pong child sent nothing for {timeout:g} s")
        try:
            return self._pipe.recv()
        except EOFError:
            _join(self._process, STOP_TIMEOUT)
            raise RuntimeError(
                f"the ping-pong child exited with status {self._process.exitcode} (its stderr has why)"
            ) from None


def _join(process: BaseProcess, timeout: float) -> None:
    """`BaseProcess.join` with a timeout, in slices (see `devstack.signals`)."""
    wait_in_slices(functools.partial(_exited, process), timeout)


def _exited(process: BaseProcess, seconds: float) -> bool:
    process.join(seconds)
    return process.exitcode is not None


def _serve(pipe: Connection, kafka: KafkaSettings, request_topic: str, reply_topic: str) -> None:
    """The child: answer each order with its step, until None or the parent is gone."""
    pingpong = PingPong(kafka, request_topic, reply_topic)
    try:
        pipe.send(pingpong.exchanges)  # ready: connected and positioned at the end of the topic
        while True:
            try:
                order = pipe.recv()
            except EOFError:
                return  # the bench process died: nothing to report to
            if order is None:
                return
            rate, seconds, warmup, at = order
            # Received after time zero, the first sends leave late (in the warm-up; charged).
            lead_ms = (at - time.perf_counter()) * 1000
            step = pingpong.open_loop(rate, seconds, warmup, precise=False, at=at)
            step.notes.append(f"order received {lead_ms:.2f} ms before time zero")
            pipe.send((step, pingpong.exchanges))
    finally:
        pingpong.close()

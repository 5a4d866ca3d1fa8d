"""Child processes that never outlive the Python process that started them."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import threading
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for Popen: the kernel SIGKILLs the child when its parent dies.

    Runs in the child between fork and exec, so an interrupted or killed test run,
    benchmark, chaos run or ``make run`` leaves no broker, gateway or worker behind.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Child:
    """One started process: a gateway, a worker, or any other part of a local stack."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path | None
    """Where its output goes; None when it shares the parent's terminal."""

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    @classmethod
    def spawn(
        cls,
        name: str,
        command: list[str],
        env: dict[str, str] | None,
        log: Path | None = None,
        *,
        cwd: Path | None = None,
        append: bool = False,
    ) -> Child:
        """Start ``command``; its output goes to ``log`` (appended if ``append``) or the terminal.

        The child gets a session of its own, so a Ctrl-C reaches only the parent, which
        stops children in order; and it dies with the parent (`die_with_parent`).
        Call from the main thread: the parent-death signal follows the spawning *thread*, so a
        child forked from a pool thread is killed when that thread ends (a restarted broker
        died with `asyncio.run`'s executor, and the next scenario met a dead node).

        Raises:
            RuntimeError: called from another thread.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                f"spawn {name!r} from the main thread: its parent-death signal follows the thread"
            )
        if log is None:
            return cls(name, _popen(command, env, cwd, None), None)
        with log.open("ab" if append else "wb") as sink:
            return cls(name, _popen(command, env, cwd, sink), log)

    def stop(self, grace: float) -> int:
        """SIGTERM (the gateway drains, the worker commits), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                return self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def tail(self, lines: int = 30) -> str:
        """The end of its log, for error messages."""
        text = self.log.read_text(errors="replace") if self.log is not None and self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _popen(
    command: list[str], env: dict[str, str] | None, cwd: Path | None, sink: IO[bytes] | None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=sink,
        stderr=None if sink is None else subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - see Child.spawn
    )

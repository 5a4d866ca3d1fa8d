"""`Child`: one process of the stack, started so that it never outlives the bench."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from devstack.process import die_with_parent


class StackError(RuntimeError):
    """A process of the stack failed to start or died."""


@dataclass
class Child:
    """One started process."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.process.pid

    @classmethod
    def spawn(cls, name: str, command: list[str], env: dict[str, str], log: Path) -> Child:
        """Start ``command`` with its output in ``log``."""
        with log.open("wb") as sink:
            process = subprocess.Popen(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops children in order
                preexec_fn=die_with_parent,  # noqa: PLW1509 - started from the main thread
            )
        return cls(name, process, log)

    def stop(self, grace: float) -> None:
        """SIGTERM (the gateway drains, the worker commits), SIGKILL after ``grace`` seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self, lines: int = 30) -> str:
        """The end of its log, for error messages."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

"""The side-effect ledger the chaos handlers write (see `chaos.handlers`), read back by the harness."""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Callable
from pathlib import Path

from chaos.handlers import EFFECTS, EXECUTIONS, WORK


class Ledger:
    """A fresh directory per scenario: ``keys/`` markers and ``effects``, ``executions``, ``work`` logs."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="chaos-ledger-"))
        (self.path / "keys").mkdir()

    def effects(self) -> collections.Counter[str]:
        """Applied side effects per Idempotency-Key."""
        return self._count(EFFECTS, lambda line: line)

    def executions(self) -> collections.Counter[str]:
        """Handler executions per Idempotency-Key (more than one = redelivered)."""
        return self._count(EXECUTIONS, lambda line: line.split(" ", 1)[0])

    def runners(self) -> dict[str, list[int]]:
        """Per Idempotency-Key, the pid of every process that executed it, in order."""
        file = self.path / EXECUTIONS
        pids: dict[str, list[int]] = collections.defaultdict(list)
        if file.exists():
            for line in filter(None, file.read_text().splitlines()):
                key, _, pid = line.split(" ")
                pids[key].append(int(pid))
        return dict(pids)

    def work(self) -> dict[str, dict[str, float]]:
        """Long-work events per nonce: ``start``, ``completed``, ``cancelled``, ``stopped`` -> epoch s."""
        file = self.path / WORK
        events: dict[str, dict[str, float]] = collections.defaultdict(dict)
        if file.exists():
            for line in filter(None, file.read_text().splitlines()):
                nonce, event, at = line.split(" ")
                events[nonce][event] = float(at)
        return dict(events)

    def _count(self, name: str, key: Callable[[str], str]) -> collections.Counter[str]:
        file = self.path / name
        if not file.exists():
            return collections.Counter()
        return collections.Counter(key(line) for line in file.read_text().splitlines() if line)

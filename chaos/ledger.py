"""The side-effect ledger the chaos handlers write (see `chaos.handlers`), read back by the harness."""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Callable
from pathlib import Path

from chaos.handlers import EFFECTS, EXECUTIONS


class Ledger:
    """A fresh directory per scenario: ``keys/`` markers, ``effects.log``, ``executions.log``."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="chaos-ledger-"))
        (self.path / "keys").mkdir()

    def effects(self) -> collections.Counter[str]:
        """Applied side effects per Idempotency-Key."""
        return self._count(EFFECTS, lambda line: line)

    def executions(self) -> collections.Counter[str]:
        """Handler executions per Idempotency-Key (more than one = redelivered)."""
        return self._count(EXECUTIONS, lambda line: line.split(" ", 1)[0])

    def _count(self, name: str, key: Callable[[str], str]) -> collections.Counter[str]:
        file = self.path / name
        if not file.exists():
            return collections.Counter()
        return collections.Counter(key(line) for line in file.read_text().splitlines() if line)

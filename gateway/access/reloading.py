"""`ReloadingFile`: a mounted file's parsed content, read again when the file changes.

API keys and issuer keys live in files an operator rotates (a Kubernetes Secret updated in
place), so they are re-read while the gateway runs: at most every `CHECK_SECONDS`, parsed
only when the bytes changed. A file that cannot be read or parsed at start stops the
gateway; later, mid-rotation say, the content held keeps serving and a warning says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_SECONDS = 1.0
"""How often the file is read again to see whether it changed (a few kilobytes: cheaper than
being clever with modification times, which a same-size rewrite within their granularity fools)."""


class ReloadingFile(Generic[T]):
    """``parse`` of the file at ``path``; ``what`` names it in log lines."""

    def __init__(
        self,
        path: Path,
        parse: Callable[[bytes], T],
        what: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._parse = parse
        self._what = what
        self._clock = clock
        self._content: bytes | None = None
        self._value: T | None = None
        self._checked_at = -float("inf")

    def load(self) -> T:
        """Read the file now.

        Raises:
            OSError: it cannot be read.
            ValueError: ``parse`` refused it.
        """
        self._checked_at = self._clock()
        content = self._path.read_bytes()
        if self._value is None or content != self._content:
            self._value = self._parse(content)
            self._content = content
            log.info("%s read", self._what, extra={"path": str(self._path)})
        return self._value

    def current(self) -> T:
        """The content, read again first if `CHECK_SECONDS` have passed; `load` before the first call."""
        assert self._value is not None, "load() the file first"
        if self._clock() - self._checked_at >= CHECK_SECONDS:
            try:
                return self.load()
            except (OSError, ValueError) as exc:  # mid-rotation, say: the content held still serves
                log.warning("could not re-read the %s", self._what, extra={"cause": str(exc)})
        return self._value

"""`FairShare`: no caller may hold more than its share of the requests awaiting replies.

Without it one busy caller can fill the whole pending map (``GATEWAY_MAX_PENDING``) and
every other caller is shed with it. With it, that caller alone gets 429 once it has
``limit`` requests pending; the others are still served.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ..errors import OverShareError


class FairShare:
    """Pending requests per caller subject, capped at ``limit``."""

    def __init__(self, limit: int, retry_after: int) -> None:
        self.limit = limit
        self._retry_after = retry_after
        self._pending: dict[str, int] = {}

    @contextlib.contextmanager
    def held(self, subject: str) -> Iterator[None]:
        """Count one pending request of ``subject`` for the duration of the block.

        Raises:
            OverShareError: ``subject`` already has ``limit`` pending.
        """
        pending = self._pending.get(subject, 0)
        if pending >= self.limit:
            raise OverShareError(
                f"this caller has {pending} requests awaiting replies, its fair share",
                retry_after=self._retry_after,
            )
        self._pending[subject] = pending + 1
        try:
            yield
        finally:
            left = self._pending[subject] - 1
            if left:
                self._pending[subject] = left
            else:
                del self._pending[subject]

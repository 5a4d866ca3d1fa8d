"""Correlation ids: who issued them, and which one the current request carries.

An id is 32 lowercase hex digits, as the wire contract requires. The first 8 are
this process's random instance tag, the other 24 are random per request (96 bits,
so ids never collide in practice). The tag lets the reply listener tell a late
reply to one of *our* requests from a reply meant for another replica (or a
previous incarnation of this one) that shares the reply partition. Workers treat
the id as opaque. The random digits come from ``os.urandom`` in batches, which keeps
them unpredictable without a system call per request.
"""

from __future__ import annotations

import secrets

from kafkarpc import logs

TAG_LENGTH = 8
RANDOM_DIGITS = 24
BATCH = 256
"""Ids drawn from one ``os.urandom`` call."""

current = logs.correlation_id
"""The correlation id of the request being served; the JSON logs and problem bodies read it."""


class CorrelationIds:
    """Issues ids carrying one random instance tag."""

    def __init__(self, tag: str | None = None) -> None:
        self.tag = tag if tag is not None else secrets.token_hex(TAG_LENGTH // 2)
        """Hex prefix shared by every id this process issues."""
        self._digits = ""
        self._next = 0

    def new(self) -> str:
        """A fresh id, also made `current` for this task."""
        start = self._next
        if start >= len(self._digits):
            self._digits, start = secrets.token_hex(BATCH * RANDOM_DIGITS // 2), 0
        self._next = start + RANDOM_DIGITS
        correlation_id = self.tag + self._digits[start : self._next]
        current.set(correlation_id)
        return correlation_id

    def issued(self, correlation_id: str) -> bool:
        """Whether this process could have issued ``correlation_id``."""
        return correlation_id.startswith(self.tag)

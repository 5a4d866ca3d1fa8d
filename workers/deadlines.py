"""`Deadlines`: a handler's deadline timer, armed only if the handler outlives its first step.

Most handlers answer in the step that starts them, without an ``await`` that suspends, and for
them a loop timer created and cancelled per request is pure cost (about 4 µs of the 40 that
``python -m bench.dispatch`` measures per record; docs/PERFORMANCE.md, "A deadline timer only
for handlers that wait"). So the dispatcher enters each handler's deadline scope
unarmed (``asyncio.timeout(None)``) and hands the call here; one callback per loop turn then
gives every scope still entered the deadline that ``asyncio.timeout(delay)`` would have set.
A handler that waits is cut at the same moment as before, since no time passes for it between
its first step and that callback.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.call import Call


class Deadlines:
    """Arms the deadline scopes of the calls still running a loop turn after they started."""

    __slots__ = ("_unarmed",)

    def __init__(self) -> None:
        self._unarmed: list[tuple[Call, float]] = []

    def arm_later(self, call: Call, delay: float) -> None:
        """Once this step is over, give ``call``'s scope a deadline ``delay`` seconds from now."""
        loop = asyncio.get_running_loop()
        if not self._unarmed:
            loop.call_soon(self._arm)
        self._unarmed.append((call, loop.time() + delay))

    def _arm(self) -> None:
        unarmed, self._unarmed = self._unarmed, []
        for call, when in unarmed:
            call.arm(when)

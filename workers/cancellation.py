"""`Cancellation`: the flag a handler checks to learn that its answer is no longer wanted."""

from __future__ import annotations

import threading


class Cancellation:
    """Set when nobody waits for the answer any more: the caller cancelled, or the deadline passed.

    An ``async def`` handler needs no flag: it is cancelled (`asyncio.CancelledError` at its next
    ``await``). A plain ``def`` handler runs in a thread, which nothing can interrupt; declare a
    parameter of this type and check it between steps, or wait on it instead of sleeping::

        @registry.handler("export")
        def export(cancellation: Cancellation) -> dict[str, int]:
            for done, chunk in enumerate(chunks()):
                if cancellation.cancelled:
                    break  # whatever it returns now is dropped
                write(chunk)
            return {"chunks": done}
    """

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = threading.Event()

    @property
    def cancelled(self) -> bool:
        """Whether the answer is no longer wanted."""
        return self._event.is_set()

    def is_set(self) -> bool:
        """`cancelled`, spelled like `threading.Event` for code written against one."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until cancelled or ``timeout`` seconds passed (a sleep that ends early); `cancelled`."""
        return self._event.wait(timeout)

    def set(self) -> None:
        """Mark the answer unwanted; the runtime calls it."""
        self._event.set()

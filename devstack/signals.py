"""Main-thread waits that still act on SIGINT and SIGTERM, whichever thread the kernel picked.

CPython runs Python signal handlers in the main thread only. The kernel delivers a
process-directed signal to any thread that does not block it; when that is another
thread, CPython's C-level handler there just records the signal (and writes to the
wakeup fd, if one is set), and nothing interrupts the main thread. A main thread blocked
with no timeout (a lock as in ``Event.wait()``, ``waitpid``, ``select``) then runs the
handler only when that wait ends for another reason: ``make run`` ignored SIGTERM and
Ctrl-C this way.

`wait_in_slices` blocks for at most `SLICE_SECONDS` at a time; between slices the
interpreter runs any recorded handler.
"""

from __future__ import annotations

import time
from collections.abc import Callable

SLICE_SECONDS = 0.1
"""The longest a signal recorded on another thread waits for its handler to run in the main thread."""


def wait_in_slices(wait: Callable[[float], bool], timeout: float | None = None) -> bool:
    """Repeat ``wait(seconds)``, ``seconds`` <= `SLICE_SECONDS`, until it returns True or ``timeout`` passes.

    Args:
        wait: a blocking wait bounded by its argument that returns whether its condition
            holds, e.g. `threading.Event.wait` or `multiprocessing.connection.Connection.poll`.
        timeout: seconds in all; None waits as long as it takes.

    Returns:
        True once ``wait`` did; False when ``timeout`` passed first.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE_SECONDS if deadline is None else deadline - time.monotonic()
        if wait(max(0.0, min(SLICE_SECONDS, left))):
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False

"""Main-thread waits that still act on SIGINT and SIGTERM, whichever thread the kernel picked.

CPython runs Python signal handlers in the main thread only. The kernel delivers a
process-directed signal to any thread that does not block it; when that is another
thread, CPython's C-level handler there just records the signal (and writes to the
wakeup fd, if one is set), and nothing interrupts the main thread. A main thread blocked
with no timeout (a lock as in ``Event.wait()``, ``waitpid``, ``select``) then runs the
handler only when that wait ends for another reason: ``make run`` ignored SIGTERM and
Ctrl-C this way.

* `wait_in_slices` blocks for at most `SLICE_SECONDS` at a time; between slices the
  interpreter runs any recorded handler.
* `waking_on_signals` gives an asyncio loop in the main thread a wakeup fd, as uvloop
  and ``loop.add_signal_handler`` do: a signal on any thread wakes the loop at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable

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


@contextlib.asynccontextmanager
async def waking_on_signals() -> AsyncIterator[None]:
    """Within the block, any signal wakes the running loop, so its Python handler runs at once.

    For an asyncio loop in the main thread that has no wakeup fd: the stdlib loop sets one
    only in ``add_signal_handler``, so ``asyncio.run`` with ``signal.signal`` handlers (its
    own Ctrl-C handling included) otherwise waits in ``epoll`` until the next timer or I/O.
    Replaces any wakeup fd for the block's duration; do not combine with
    ``loop.add_signal_handler``.
    """
    loop = asyncio.get_running_loop()
    receiving, sending = socket.socketpair()
    with receiving, sending:
        receiving.setblocking(False)
        sending.setblocking(False)
        loop.add_reader(receiving.fileno(), _drain, receiving)
        previous = signal.set_wakeup_fd(sending.fileno(), warn_on_full_buffer=False)
        try:
            yield
        finally:
            signal.set_wakeup_fd(previous)
            loop.remove_reader(receiving.fileno())


def _drain(receiving: socket.socket) -> None:
    # The bytes are signal numbers; waking up was their only purpose.
    with contextlib.suppress(BlockingIOError):
        while receiving.recv(4096):
            pass

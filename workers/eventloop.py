"""The worker's event loop: uvloop where it is installed, as uvicorn's ``--loop auto`` chooses.

Every request crosses from the fetch thread to the loop and its reply leaves from the loop, so
the loop's wake-up is on the path of each call. uvloop's is shorter: at 100 calls/s a fetch
thread and a loop added 0.07 ms to a request-reply round trip with uvloop and 0.13 ms with the
standard library's loop, and the worker spent 9 % less CPU per request in a closed loop
(docs/PERFORMANCE.md, "The worker on uvloop").
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
from collections.abc import Callable
from typing import Literal

EventLoop = Literal["auto", "uvloop", "asyncio"]
"""``WORKER_LOOP``: which loop `Worker.run` builds."""


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What `asyncio.Runner` builds its loop with; None for the standard library's.

    Raises:
        RuntimeError: ``uvloop`` was asked for and is not installed.
    """
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:  # uvicorn[standard] has it wherever it builds
        if choice == "uvloop":
            raise RuntimeError("WORKER_LOOP=uvloop, but uvloop is not installed")
        return None
    new_event_loop: Callable[[], asyncio.AbstractEventLoop] = importlib.import_module("uvloop").new_event_loop
    return new_event_loop

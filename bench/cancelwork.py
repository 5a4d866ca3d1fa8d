"""Handlers for `bench.cancellation`: ``WORKER_HANDLERS=bench.cancelwork:registry``.

    bench.spin        plain ``def`` (thread pool): ``chunks`` CPU chunks, checking its
                      `Cancellation` flag before each one
    bench.spin_async  ``async def`` (event loop): ``chunks`` CPU chunks, ``await asyncio.sleep(0)``
                      after each one, where a cancel raises `asyncio.CancelledError`

A chunk is a fixed amount of pure-Python arithmetic (it holds the GIL, as most CPU-bound
Python does), about a millisecond on the benchmark machine; `chunk_seconds` measures it.
Both answer how many chunks they ran. ``chunks`` comes from the query string.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from pydantic import BaseModel, Field

from workers import Cancellation, HandlerRegistry

registry = HandlerRegistry()

CHUNK_LOOPS = 20_000
"""Iterations of one chunk: about 1 ms of one core here."""
MAX_CHUNKS = 100_000
Chunks = Annotated[int, Field(ge=0, le=MAX_CHUNKS)]


class Spun(BaseModel):
    """What a spin handler did."""

    chunks: int


def chunk() -> int:
    """One unit of CPU work; the result only keeps the loop from being optimised away."""
    total = 0
    for i in range(CHUNK_LOOPS):
        total += i * i
    return total


def chunk_seconds(samples: int = 5, per_sample: int = 20) -> float:
    """CPU seconds one `chunk` takes in this process (the fastest of ``samples`` measurements)."""
    best = float("inf")
    for _ in range(samples):
        began = time.process_time()
        for _ in range(per_sample):
            chunk()
        best = min(best, (time.process_time() - began) / per_sample)
    return best


@registry.handler("bench.spin")
def spin(cancellation: Cancellation, chunks: Chunks = 100) -> Spun:
    """Run ``chunks`` CPU chunks in a thread, stopping early once the answer is unwanted."""
    done = 0
    while done < chunks and not cancellation.cancelled:
        chunk()
        done += 1
    return Spun(chunks=done)


@registry.handler("bench.spin_async")
async def spin_async(chunks: Chunks = 100) -> Spun:
    """Run ``chunks`` CPU chunks on the event loop, yielding to it after each (a cancel lands there)."""
    for _ in range(chunks):
        chunk()
        await asyncio.sleep(0)
    return Spun(chunks=chunks)

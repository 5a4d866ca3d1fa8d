"""Worker handlers for the chaos suite: ``--handlers chaos.handlers:registry``.

    chaos.echo   echoes the body back and applies one side effect per Idempotency-Key
    chaos.stall  freezes the whole worker process while holding the GIL (librdkafka's own
                 threads keep heartbeating, so only ``max.poll.interval.ms`` can evict it)
    chaos.count  streams ``n`` parts ``{"nonce", "i"}``, ``interval`` s apart (effect as echo)
    chaos.work   long async work in steps; ``chaos.work_sync`` the same in a thread, checking
                 its `Cancellation` between steps

The side effect is the creation of a marker file named after the key (``O_CREAT|O_EXCL``, atomic
across processes), which is how a real handler dedupes with a shared store. Every execution is
appended to ``executions.log`` and every applied effect to ``effects.log`` (``CHAOS_LEDGER`` is
the directory), so the harness can count redeliveries and duplicate side effects separately.
The long work appends ``<nonce> <event> <epoch s>`` to ``work.log``: ``start``, then
``completed``, ``cancelled`` (CancelledError) or ``stopped`` (the flag), to tell whether a
handler kept running after its caller left.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
from pydantic import BaseModel, Field

from workers import Cancellation, HandlerRegistry, Request, Response

registry = HandlerRegistry()

LEDGER_ENV = "CHAOS_LEDGER"
IDEMPOTENCY_KEY = "idempotency-key"
EXECUTIONS = "executions.log"
EFFECTS = "effects.log"
WORK = "work.log"
MAX_DELAY = 60.0
MAX_STALL = 60
# PyDLL calls keep the GIL: the Python threads stop, librdkafka's C threads do not.
_LIBC = ctypes.PyDLL(None)


def _ledger() -> Path:
    return Path(os.environ[LEDGER_ENV])


def _append(path: Path, line: bytes) -> None:
    # O_APPEND writes of one short line are not interleaved between processes.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def _key_of(request: Request) -> str | None:
    for name, value in request.extra:
        if name == IDEMPOTENCY_KEY and value is not None:
            return value.decode()
    return None


def apply_once(ledger: Path, key: str) -> bool:
    """Apply the side effect for ``key`` unless some process already did; True if applied now."""
    marker = ledger / "keys" / key
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        return False
    _append(ledger / EFFECTS, f"{key}\n".encode())
    return True


@registry.handler("chaos.echo")
async def echo(request: Request) -> Response:
    """Record the execution, apply the effect once per key, echo the body (after ``delay`` s)."""
    _execute(request)
    delay = _delay(request.body)
    if delay > 0:
        await asyncio.sleep(delay)
    return Response(request.body, 200, request.content_type)


def _execute(request: Request) -> None:
    """Record the execution and apply the effect once, for calls that carry an Idempotency-Key."""
    ledger = _ledger()
    key = _key_of(request)
    if key is not None:  # calls without a key (bad-input probes) are not part of the accounting
        _append(ledger / EXECUTIONS, f"{key} {request.correlation_id} {os.getpid()}\n".encode())
        apply_once(ledger, key)


def _delay(body: bytes) -> float:
    """``delay`` seconds from a JSON object body; 0 for any other body (a bad-input probe's)."""
    try:
        document = orjson.loads(body) if body.startswith(b"{") else {}
    except orjson.JSONDecodeError:
        return 0.0
    delay = document.get("delay", 0) if isinstance(document, dict) else 0
    return float(delay) if isinstance(delay, int | float) and 0 <= delay <= MAX_DELAY else 0.0


class Stall(BaseModel):
    """Body of ``chaos.stall``."""

    seconds: int = Field(ge=0, le=MAX_STALL)


@registry.handler("chaos.stall")
async def stall(body: Stall) -> dict[str, int]:
    """Freeze this process for ``seconds`` without releasing the GIL."""
    _LIBC.sleep(body.seconds)
    return {}


class Count(BaseModel):
    """Body of ``chaos.count``."""

    nonce: str = Field(max_length=64)
    n: int = Field(ge=0, le=10_000)
    interval: float = Field(ge=0, le=1)


class Tick(BaseModel):
    """One part of ``chaos.count``: whose stream, and its number."""

    nonce: str
    i: int


@registry.handler("chaos.count")
async def count(body: Count, request: Request) -> AsyncIterator[Tick]:
    """Parts 0 to n - 1, ``interval`` s apart; each names the caller's nonce (cross-delivery check)."""
    _execute(request)
    for i in range(body.n):
        if i:
            await asyncio.sleep(body.interval)
        yield Tick(nonce=body.nonce, i=i)


class Work(BaseModel):
    """Body of ``chaos.work`` and ``chaos.work_sync``: ``seconds`` of work in ``step`` s steps."""

    nonce: str = Field(max_length=64)
    seconds: float = Field(ge=0, le=MAX_DELAY)
    step: float = Field(gt=0, le=1)


def _work_event(nonce: str, event: str) -> None:
    _append(_ledger() / WORK, f"{nonce} {event} {time.time():.3f}\n".encode())


@registry.handler("chaos.work")
async def work(body: Work) -> dict[str, str]:
    """Awaits step after step (as a handler awaiting queries would); notes how it ended."""
    _work_event(body.nonce, "start")
    try:
        for _ in range(round(body.seconds / body.step)):
            await asyncio.sleep(body.step)  # stands for an awaited query
    except asyncio.CancelledError:
        _work_event(body.nonce, "cancelled")
        raise
    _work_event(body.nonce, "completed")
    return {"nonce": body.nonce}


@registry.handler("chaos.work_sync")
def work_sync(body: Work, cancellation: Cancellation) -> dict[str, str]:
    """The same in a pool thread, which nothing can interrupt: it checks the flag between steps."""
    _work_event(body.nonce, "start")
    for _ in range(round(body.seconds / body.step)):
        if cancellation.wait(body.step):  # a step of blocking work that ends early when cancelled
            _work_event(body.nonce, "stopped")
            return {"nonce": body.nonce}
    _work_event(body.nonce, "completed")
    return {"nonce": body.nonce}

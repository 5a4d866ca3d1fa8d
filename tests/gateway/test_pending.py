"""PendingReplies: bounded, and every entry leaves."""

from __future__ import annotations

import asyncio

import pytest

from gateway.pending import PendingFullError, PendingReplies


async def test_capacity_is_enforced_and_freed_by_discard() -> None:
    pending: PendingReplies[str] = PendingReplies(2)
    pending.register("a")
    pending.register("b")
    with pytest.raises(PendingFullError):
        pending.register("c")
    pending.discard("a")
    pending.register("c")
    assert len(pending) == 2


async def test_resolve_and_fail_reach_only_waiting_futures() -> None:
    pending: PendingReplies[str] = PendingReplies(10)
    future = pending.register("a")
    assert pending.resolve("a", "reply")
    assert not pending.resolve("a", "duplicate")
    assert not pending.fail("a", RuntimeError())
    assert not pending.resolve("unknown", "x")
    assert await future == "reply"
    with pytest.raises(KeyError):
        pending.register("a")


async def test_discard_cancels_a_waiting_future_and_signals_empty() -> None:
    pending: PendingReplies[str] = PendingReplies(10)
    future = pending.register("a")
    emptied = asyncio.create_task(pending.emptied())
    await asyncio.sleep(0)
    assert not emptied.done()
    pending.discard("a")
    pending.discard("a")
    await asyncio.wait_for(emptied, 1)
    assert future.cancelled()
    assert "a" not in pending

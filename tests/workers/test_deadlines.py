"""`Deadlines`: a handler's deadline scope is armed only if it is still running a loop turn later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.loopturn import next_turn
from workers.call import Call
from workers.deadlines import Deadlines


class Handler:
    """A handler's deadline block as the dispatcher runs it: an unarmed scope handed to `Deadlines`."""

    def __init__(self) -> None:
        self.deadlines = Deadlines()
        self.call = Call("c")
        self.scope = asyncio.timeout(None)

    async def run(self, delay: float, work: Callable[[], Awaitable[None]] | None = None) -> None:
        async with self.scope:
            with self.call.watching(self.scope):
                self.deadlines.arm_later(self.call, delay)
                if work is not None:
                    await work()


async def forever() -> None:
    await asyncio.get_running_loop().create_future()


async def test_a_scope_left_within_its_first_step_is_never_armed() -> None:
    handler = Handler()
    await handler.run(60)
    await next_turn()
    assert handler.scope.when() is None


async def test_a_scope_still_entered_a_turn_later_gets_its_deadline() -> None:
    loop = asyncio.get_running_loop()
    handler, seen = Handler(), []

    async def wait_a_turn() -> None:
        await next_turn()
        seen.append(handler.scope.when())

    earliest = loop.time() + 60
    await handler.run(60, wait_a_turn)
    latest = loop.time() + 60
    [when] = seen
    assert when is not None
    assert earliest <= when <= latest


async def test_a_handler_that_waits_past_its_deadline_is_cut() -> None:
    handler = Handler()
    with pytest.raises(TimeoutError):
        await handler.run(0.01, forever)
    assert handler.scope.expired()
    assert not handler.call.cancelled


async def test_a_cancel_before_arming_keeps_its_deadline_of_now() -> None:
    loop = asyncio.get_running_loop()
    handler, cancelled_at = Handler(), []

    async def cancelled_then_waiting() -> None:
        handler.call.cancel()
        cancelled_at.append(loop.time())
        await forever()

    with pytest.raises(TimeoutError):
        await handler.run(60, cancelled_then_waiting)
    when = handler.scope.when()
    assert when is not None
    assert when <= cancelled_at[0]  # not postponed to the 60 s deadline
    assert handler.call.cancelled

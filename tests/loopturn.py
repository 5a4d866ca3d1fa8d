"""`next_turn`: wait for the event loop to run what is already scheduled on it."""

from __future__ import annotations

import asyncio


async def next_turn() -> None:
    """Return once the callbacks already scheduled on the loop have run (it runs them in order)."""
    loop = asyncio.get_running_loop()
    turned = loop.create_future()
    loop.call_soon(turned.set_result, None)
    await turned

"""What a scenario is: a name, the cluster it needs, whether CI runs it, and its coroutine."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from chaos.report import Figures
from chaos.stack import Kafka, Stack

ClusterKind = Literal["single", "triple", "proxied"]
T_co = TypeVar("T_co", covariant=True)


class Runs(Protocol[T_co]):
    """A load: `chaos.load.Load` (calls) or `chaos.streamload.StreamLoad` (streams)."""

    async def run(self) -> Sequence[T_co]: ...


@dataclass(frozen=True)
class Scenario:
    """One fault-injection scenario."""

    name: str
    cluster: ClusterKind
    """The cluster of a full run: the production topology (3 brokers) unless the fault needs fewer."""
    quick: bool
    """Part of the CI subset (`python -m chaos --quick`), which runs on one broker."""
    injected: str
    """The fault, in one line, for the report."""
    run: Callable[[Kafka, Figures], Coroutine[None, None, None]]
    long: bool = False
    """Too long for the default run: only ``--only NAME`` runs it (its own make target)."""


async def under_fault(load: Runs[T_co], fault: Awaitable[None], stack: Stack) -> Sequence[T_co]:
    """Run the load and the fault schedule together; the fault waits on load progress.

    Meanwhile the gateways' CPU run-queue waits are sampled, to explain late answers.
    """
    watch = stack.watch_gateways()
    sampler = asyncio.create_task(watch.run())
    try:
        outcomes, _ = await asyncio.gather(load.run(), fault)
    finally:
        sampler.cancel()
    return outcomes


@contextlib.asynccontextmanager
async def closing(stack: Stack, figures: Figures) -> AsyncIterator[Stack]:
    """Tear the stack down and check the invariants whatever happens inside."""
    try:
        yield stack
    finally:
        await asyncio.to_thread(stack.close, figures)

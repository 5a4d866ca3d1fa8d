"""Per-partition, in-order offset tracking for records handled out of order.

Records of one partition finish in any order, but the committed position may only move up
to the lowest unfinished offset: committing past it would lose that record in a crash.
Everything here runs on the event loop thread; it knows nothing about Kafka clients.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

# A partition is identified by (topic, partition number).
Partition = tuple[str, int]


@dataclass(eq=False)
class PartitionOffsets:
    """Offsets taken from one partition during one assignment of it."""

    partition: Partition
    """Which partition."""
    received: deque[int] = field(default_factory=deque)
    """Offsets handed to the worker, in fetch (ascending) order, not yet committable."""
    done: set[int] = field(default_factory=set)
    """Finished offsets still behind an unfinished one."""
    position: int | None = None
    """Next offset to commit (last contiguous finished + 1); None until something finished."""
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    """Handler tasks running for this partition, awaited when it is revoked."""
    closing: bool = False
    """Being revoked or lost: queued records are skipped; running ones may still finish."""

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` done; returns whether `position` advanced."""
        self.done.add(offset)
        advanced = False
        while self.received and self.received[0] in self.done:
            head = self.received.popleft()
            self.done.discard(head)
            self.position = head + 1
            advanced = True
        return advanced


class OffsetTracker:
    """The assigned partitions and what may be committed for each."""

    def __init__(self) -> None:
        self._partitions: dict[Partition, PartitionOffsets] = {}

    def assign(self, partitions: Iterable[Partition]) -> None:
        """Start tracking newly assigned partitions (fresh state, even if seen before)."""
        for partition in partitions:
            self._partitions[partition] = PartitionOffsets(partition)

    def track(self, partition: Partition, offset: int) -> PartitionOffsets | None:
        """Record that ``offset`` was received; None if the partition is not assigned to us."""
        state = self._partitions.get(partition)
        if state is None or state.closing:
            return None
        state.received.append(offset)
        return state

    def close(self, partitions: Iterable[Partition]) -> list[PartitionOffsets]:
        """Mark partitions as closing (revoked or lost) and return their states."""
        states = [state for p in partitions if (state := self._partitions.get(p)) is not None]
        for state in states:
            state.closing = True
        return states

    def forget(self, states: Iterable[PartitionOffsets]) -> None:
        """Stop tracking closed partitions (unless they were re-assigned meanwhile)."""
        for state in states:
            if self._partitions.get(state.partition) is state:
                del self._partitions[state.partition]

    def tracked(self, state: PartitionOffsets) -> bool:
        """Whether ``state`` is still the tracked state of its partition (not lost or replaced)."""
        return self._partitions.get(state.partition) is state

    @property
    def partitions(self) -> list[Partition]:
        """Partitions currently tracked."""
        return list(self._partitions)

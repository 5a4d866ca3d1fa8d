"""`kafkarpc.heap`: what start-up built leaves the collector's generations; garbage does not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from kafkarpc import heap


class Node:
    """A container the collector tracks, and that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def thawed() -> Iterator[None]:
    """Give the frozen objects back to the collector after the test (the suite's process lives on)."""
    yield
    gc.unfreeze()


def test_live_objects_are_frozen_and_garbage_is_collected_first(thawed: None) -> None:
    kept = Node()
    garbage, partner = Node(), Node()
    garbage.other, partner.other = partner, garbage  # only the cycle collector frees these
    dropped = weakref.ref(garbage)
    del garbage, partner
    assert dropped() is not None

    frozen = heap.freeze()

    assert dropped() is None  # collected, not frozen
    assert frozen == gc.get_freeze_count() > 0
    assert not any(found is kept for found in gc.get_objects())  # no collection walks it now
    gc.unfreeze()
    assert any(found is kept for found in gc.get_objects())

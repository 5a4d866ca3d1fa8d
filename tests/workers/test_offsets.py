"""In-order commit positions for out-of-order completion."""

from __future__ import annotations

from workers.offsets import OffsetTracker

P = ("requests", 0)


def test_position_moves_only_over_contiguous_finished_offsets() -> None:
    tracker = OffsetTracker()
    tracker.assign([P])
    states = [tracker.track(P, offset) for offset in (10, 11, 12)]
    state = states[0]
    assert state is not None
    assert not state.finish(12)
    assert not state.finish(11)
    assert state.position is None  # 10 still running
    assert state.finish(10)
    assert state.position == 13


def test_gaps_in_offsets_are_skipped() -> None:
    tracker = OffsetTracker()
    tracker.assign([P])
    state = tracker.track(P, 5)
    tracker.track(P, 9)  # 6-8 compacted away or transaction markers
    assert state is not None
    state.finish(5)
    assert state.position == 6
    state.finish(9)
    assert state.position == 10


def test_unassigned_and_closing_partitions_are_not_tracked() -> None:
    tracker = OffsetTracker()
    assert tracker.track(P, 0) is None
    tracker.assign([P])
    [state] = tracker.close([P])
    assert tracker.track(P, 1) is None
    assert tracker.tracked(state)
    tracker.forget([state])
    assert not tracker.tracked(state)
    assert tracker.partitions == []


def test_a_reassigned_partition_gets_fresh_state_and_the_old_one_is_stale() -> None:
    tracker = OffsetTracker()
    tracker.assign([P])
    old = tracker.track(P, 0)
    closed = tracker.close([P])
    tracker.assign([P])
    tracker.forget(closed)  # must not drop the new assignment
    assert old is not None
    assert not tracker.tracked(old)
    new = tracker.track(P, 0)
    assert new is not None
    assert tracker.tracked(new)

"""The open loop's clock: every request once, at its time, and at most one wake-up per tick.

A virtual clock that `sleep` advances exactly, so the batches are the schedule's arithmetic
and not the host's timing. Rates and ticks are powers of two: their sums are exact in binary.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.schedule import Schedule

TICK = 1 / 1024


class VirtualTime:
    """A clock that only moves when the schedule sleeps, and a loop that runs callbacks at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.handovers: list[tuple[float, list[tuple[int, float]]]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> object:
        _, batch = args
        assert isinstance(batch, list)
        self.handovers.append((self.now, list(batch)))
        return callback(*args)


def run(rate: float, count: int, start: float = 0.5) -> VirtualTime:
    time = VirtualTime()
    schedule = Schedule(rate, start, count, 100, tick=TICK, clock=time.clock, sleep=time.sleep)
    schedule.run(time, lambda item: None)
    return time


def test_below_one_per_tick_each_request_leaves_alone_at_its_time() -> None:
    time = run(rate=256, count=20)  # one every 4 ticks
    assert [batch for _, batch in time.handovers] == [[(100 + i, 0.5 + i / 256)] for i in range(20)]
    assert [at for at, _ in time.handovers] == [0.5 + i / 256 for i in range(20)]


def test_above_one_per_tick_due_requests_leave_together_once_per_tick() -> None:
    time = run(rate=4096, count=64)  # four per tick
    items = [item for _, batch in time.handovers for item in batch]
    assert items == [(100 + i, 0.5 + i / 4096) for i in range(64)]  # each once, intended times kept
    gaps = [b - a for (a, _), (b, _) in zip(time.handovers, time.handovers[1:], strict=False)]
    assert min(gaps) >= TICK
    # The first leaves alone at time zero; each later wake-up takes the tick's four.
    assert [len(batch) for _, batch in time.handovers] == [1] + [4] * 15 + [3]


def test_a_late_wake_up_sends_the_backlog_at_once_and_charges_it() -> None:
    time = VirtualTime()
    schedule = Schedule(256, 0.0, 8, 0, tick=TICK, clock=time.clock, sleep=time.sleep)
    time.now = 3 / 256  # the thread started three intervals late
    schedule.run(time, lambda item: None)
    first_at, first = time.handovers[0]
    assert first_at == 3 / 256
    assert first == [(i, i / 256) for i in range(4)]  # intended times, not the late wake-up's
    assert sum(len(batch) for _, batch in time.handovers) == 8


def test_stop_ends_the_schedule() -> None:
    time = VirtualTime()
    schedule = Schedule(256, 0.0, 1000, 0, tick=TICK, clock=time.clock, sleep=time.sleep)

    def deliver(item: tuple[int, float]) -> None:
        if item[0] == 4:
            schedule.stop()

    schedule.run(time, deliver)
    assert [batch for _, batch in time.handovers] == [[(i, i / 256)] for i in range(5)]

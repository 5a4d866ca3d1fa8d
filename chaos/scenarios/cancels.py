"""Callers that hang up mid-call: the gateway sends cancel records and the workers stop the handlers.

Two workers with 16 handler slots each. A burst of 48 callers starts 8 s of work (half
``chaos.work``, awaited steps; half ``chaos.work_sync``, a thread checking its `Cancellation`)
and hangs up after 1.5 s; 0.3 s later 16 more start the same and hang up after 0.3 s, while
they wait behind the first burst for a slot. Normal callers keep calling ``chaos.echo`` (5 s
wait) throughout. The bursts fill every slot and queue the rest: without cancellation the normal
calls would wait behind 8 s of work nobody wants and answer 504, so their all-200 is what the
cancels bought.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from dataclasses import dataclass, field

import orjson

from chaos import records
from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.stack import Kafka, Stack

SECONDS = 8.0
"""Work each abandoned call would do: under its 10 s wait, so only a cancel stops it early."""
METHODS = ("chaos.work", "chaos.work_sync")
SLOTS = 16
BURSTS = (("first", 48, 1.5), ("queued", 16, 0.3))
"""(name, callers, seconds each keeps its connection open); the second starts 0.3 s after the first."""
ABANDONED = sum(callers for _, callers, _ in BURSTS)


@dataclass
class Abandoned:
    """What the abandoning callers did: when each hung up, in which burst, and any early answer."""

    hung_up: dict[str, float] = field(default_factory=dict)
    """Nonce -> epoch seconds of the hang-up (the handlers' ledger uses the same clock)."""
    burst: dict[str, str] = field(default_factory=dict)
    answered: list[str] = field(default_factory=list)

    async def call(self, url: str, method: str, burst: str, hold: float) -> None:
        """Start a long call, keep the connection ``hold`` s, then close it without an answer."""
        host, port = url.removeprefix("http://").split(":")
        nonce = uuid.uuid4().hex
        self.burst[nonce] = burst
        body = orjson.dumps({"nonce": nonce, "seconds": SECONDS, "step": 0.1})
        head = (
            f"POST /rpc/{method} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"prefer: wait=10\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(head.encode() + body)
            try:
                # The caller's patience (the fault's duration); an answer before it is no abandon.
                data = await asyncio.wait_for(reader.read(64), hold)
                self.answered.append(f"{method}: {data[:40]!r}")
            except TimeoutError:
                pass
        finally:
            writer.close()
            self.hung_up[nonce] = time.time()


async def abandon_mid_call(kafka: Kafka, figures: Figures) -> None:
    """360 echo calls at 40/s; at call 80, the two bursts of abandoned calls."""
    stack = Stack(kafka, "abandon-mid-call")
    async with closing(stack, figures):
        stack.add_worker(WORKER_CONCURRENCY=str(SLOTS))
        stack.add_worker(WORKER_CONCURRENCY=str(SLOTS))
        gateway = stack.add_gateway()
        await asyncio.to_thread(stack.wait_ready)
        await asyncio.to_thread(stack.wait_catalog)
        load = Load(stack.urls, total=360, rate=40, concurrency=16, wait=5)
        abandoned = Abandoned()

        async def fault() -> None:
            await load.reached(80)
            async with asyncio.TaskGroup() as group:
                for number, (burst, callers, hold) in enumerate(BURSTS):
                    if number:
                        await asyncio.sleep(0.3)  # the schedule: the second burst queues behind the first
                    for index in range(callers):
                        group.create_task(abandoned.call(gateway.url, METHODS[index % 2], burst, hold))

        await under_fault(load, fault(), stack)
        stack.account(figures, load)

        def settled() -> bool:
            # Every abandoned call is accounted for: cancelled where it was, and stopped if it ran.
            cancels = sum(w.metric("rpcworker_cancels_total") for w in stack.workers)
            work = stack.ledger.work()
            return cancels >= ABANDONED and all(len(events) > 1 for events in work.values())

        await asyncio.to_thread(records.eventually, settled, SECONDS + 5)
        _judge(figures, stack, stack.ledger.work(), abandoned)
        figures.require(figures.statuses == {200: load.total}, f"normal callers saw {figures.statuses}")


def _judge(figures: Figures, stack: Stack, work: dict[str, dict[str, float]], abandoned: Abandoned) -> None:
    """The abandoned calls: cancelled at the worker, their handlers stopped, none finished."""
    hung_up = abandoned.hung_up
    started = {nonce: events for nonce, events in work.items() if "start" in events}
    ends = {
        nonce: min(at for event, at in events.items() if event in ("cancelled", "stopped"))
        for nonce, events in started.items()
        if "cancelled" in events or "stopped" in events
    }
    completed = sum(1 for events in started.values() if "completed" in events)
    for burst, callers, hold in BURSTS:
        # Before the burst's first hang-up no cancel existed: a handler that began then had a slot.
        first = min(at for nonce, at in hung_up.items() if abandoned.burst[nonce] == burst)
        mine = [events["start"] for nonce, events in started.items() if abandoned.burst[nonce] == burst]
        at_once = sum(1 for at in mine if at < first)
        label = f"{burst} burst ({callers} hung up after {hold:g} s): began at once / after a hang-up / never"
        figures.notes[label] = f"{at_once} / {len(mine) - at_once} / {callers - len(mine)}"
    stages: dict[str, float] = {}
    handled: dict[str, float] = {}
    for worker in stack.workers:
        for stage, n in worker.by_label("rpcworker_cancels_total", "stage").items():
            stages[stage] = stages.get(stage, 0) + n
        for outcome, n in worker.by_label("rpcworker_handled_total", "outcome").items():
            handled[outcome] = handled.get(outcome, 0) + n
    gateway_cancels = stack.gateways[0].by_label("rpcgw_cancels_total", "reason")
    answered = len(abandoned.answered)
    figures.notes["abandoned calls / answered before the hang-up"] = f"{len(hung_up)} / {answered}"
    figures.notes["rpcgw_cancels_total"] = gateway_cancels
    figures.notes["rpcworker_cancels_total by stage"] = stages
    figures.notes["rpcworker_handled_total by outcome"] = handled
    cancelled = sum(1 for events in started.values() if "cancelled" in events)
    figures.notes["handlers started / stopped (CancelledError + flag) / completed"] = (
        f"{len(started)} / {len(ends)} ({cancelled} + {len(ends) - cancelled}) / {completed}"
    )
    stopped = [at - hung_up[nonce] for nonce, at in ends.items()]
    if stopped:
        figures.notes["hang-up -> handler stopped (median / worst)"] = (
            f"{statistics.median(stopped):.2f} / {max(stopped):.2f} s"
        )
    figures.require(not abandoned.answered, f"abandoned calls answered: {abandoned.answered[:3]}")
    figures.require(completed == 0, f"{completed} abandoned handlers ran to completion")
    figures.require(len(ends) == len(started), f"{len(started) - len(ends)} abandoned handlers never stopped")
    figures.require(
        gateway_cancels.get("disconnected", 0) == ABANDONED,
        f"the gateway sent {gateway_cancels} cancels, expected {ABANDONED} disconnected",
    )
    reached = stages.get("running", 0) + stages.get("queued", 0)
    figures.require(reached == ABANDONED, f"cancels reached {stages}, expected {ABANDONED} running or queued")


SCENARIOS = [
    Scenario(
        "abandon-mid-call",
        "single",
        True,
        f"{ABANDONED} callers start {SECONDS:g} s of work (async and thread) and hang up after "
        f"1.5 s or, queued, 0.3 s; 360 echo calls alongside; 2 workers x {SLOTS} slots",
        abandon_mid_call,
    )
]

"""Streamed replies while a worker is SIGKILLed: each ends whole and in order, or with an error event.

Two gateways take half the callers each. One has a short idle timeout (2.5 s): the victim's
streams end idle long before its partitions move. The other waits 20 s, past the session
timeout (6 s) and the rebalance, so the redelivered request restarts at part 0 while its caller
is still reading: the gateway must end that stream as broken (a duplicate), not stitch two runs.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence

from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing, under_fault
from chaos.service import Service
from chaos.stack import Kafka, Stack
from chaos.streamload import StreamLoad, StreamOutcome

SHORT_IDLE = 2.5
LONG_IDLE = 20.0
MARGIN = 1.0
"""How far past its gateway's idle timeout a wait between two events may go."""
PARTS = 60
INTERVAL = 0.1
WAIT = 20
"""Bounds the first part only; long enough that a redelivered request has not expired."""
IDLE = "no part arrived within"
DUPLICATE = "came twice"
"""How the gateway's error events word the two ways the kill ends a stream (docs/PROTOCOL.md)."""


async def kill_mid_stream(kafka: Kafka, figures: Figures) -> None:
    """24 callers reading 6 s streams; SIGKILL one of two workers once 24 streams have ended."""
    stack = Stack(kafka, "kill-mid-stream")
    async with closing(stack, figures):
        victim = stack.add_worker()
        stack.add_worker()
        limits = {"GATEWAY_MAX_TIMEOUT": "30"}
        short = stack.add_gateway(GATEWAY_REPLY_STREAM_IDLE_TIMEOUT=str(SHORT_IDLE), **limits)
        long = stack.add_gateway(GATEWAY_REPLY_STREAM_IDLE_TIMEOUT=str(LONG_IDLE), **limits)
        await asyncio.to_thread(stack.wait_ready)
        await asyncio.to_thread(stack.wait_catalog)
        victim_pid = victim.process.pid
        # Four 6 s streams started a second: ~24 open at once, about half on the victim's partitions.
        cap = WAIT + PARTS * INTERVAL + LONG_IDLE + 10
        load = StreamLoad(
            stack.urls, total=96, rate=4, concurrency=24, wait=WAIT, n=PARTS, interval=INTERVAL, cap=cap
        )
        killed: list[float] = []

        async def fault() -> None:
            await load.reached(24)
            killed.append(time.perf_counter())
            await asyncio.to_thread(victim.kill)

        outcomes = await under_fault(load, fault(), stack)
        figures.harness_loop_lag = load.loop_lag
        stack.account_outcomes(figures, [o.outcome(WAIT) for o in outcomes])
        runners = stack.ledger.runners()
        on_victim = [
            o for o in outcomes if runners.get(o.nonce, [0])[0] == victim_pid and o.sent_at < killed[0]
        ]
        cut_off = [o for o in on_victim if o.ended_at > killed[0]]
        figures.notes["streams started / running on the victim when it was killed"] = (
            f"{len(outcomes)} / {sum(1 for o in cut_off if o.status == 200)}"
        )
        for gateway, idle in ((short, SHORT_IDLE), (long, LONG_IDLE)):
            mine = [o for o in outcomes if o.target == gateway.url]
            here = [o for o in cut_off if o.target == gateway.url]
            _judge(figures, gateway, idle=idle, mine=mine, cut_off=here, killed=killed[0])
        _check_parts(figures, outcomes)
        figures.notes["redelivered stream executions"] = figures.redelivered
        survivor = stack.workers[1]
        figures.notes["survivor rpcworker_cancels_total by stage"] = survivor.by_label(
            "rpcworker_cancels_total", "stage"
        )
        figures.require(
            figures.lost_acknowledged == 0, f"{figures.lost_acknowledged} acknowledged requests lost"
        )


def _judge(
    figures: Figures,
    gateway: Service,
    *,
    idle: float,
    mine: Sequence[StreamOutcome],
    cut_off: Sequence[StreamOutcome],
    killed: float,
) -> None:
    """One gateway's callers: how their streams ended, how fast, and what the gateway counted."""
    name = f"{gateway.name} (idle {idle:g} s)"
    endings = collections.Counter(o.ending for o in mine)
    errors = collections.Counter(f"{o.problem}: {o.detail}" for o in mine if o.ending in ("error", "answer"))
    figures.notes[f"{name}: streams complete / error event / no stream (answer)"] = (
        f"{endings['end']} / {endings['error']} / {endings['answer']}"
    )
    figures.notes[f"{name}: errors by reason"] = dict(errors)
    stopped = [o.ended_at - killed for o in cut_off if o.ending == "error"]
    figures.notes[f"{name}: victim's streams ended with an error; worst kill -> error"] = (
        f"{len(stopped)}; {max(stopped, default=0):.2f} s"
    )
    worst_gap = max((o.worst_gap for o in mine), default=0.0)
    figures.notes[f"{name}: worst wait between two events"] = f"{worst_gap:.2f} s"
    relayed = gateway.by_label("rpcgw_streamed_replies_total", "outcome")
    figures.notes[f"{name}: rpcgw_streamed_replies_total"] = relayed
    figures.notes[f"{name}: rpcgw_cancels_total"] = gateway.by_label("rpcgw_cancels_total", "reason")
    figures.notes[f"{name}: late replies dropped"] = gateway.metric("rpcgw_late_replies_total")
    odd = {ending: n for ending, n in endings.items() if ending not in ("end", "error", "answer")}
    figures.require(not odd, f"{name}: streams that neither completed nor ended with an error: {odd}")
    figures.require(
        worst_gap <= idle + MARGIN, f"{name}: a stream waited {worst_gap:.1f} s between events (a hang)"
    )
    figures.require(
        relayed.get("complete", 0) == endings["end"],
        f"{name}: the gateway counted {relayed.get('complete', 0)} complete, callers saw {endings['end']}",
    )
    expected = IDLE if idle < LONG_IDLE else DUPLICATE
    figures.require(
        any(expected in o.detail for o in cut_off),
        f"{name}: no stream cut off by the kill ended with '{expected}': the fault did not bite",
    )


def _check_parts(figures: Figures, outcomes: Sequence[StreamOutcome]) -> None:
    """Callers' parts: 0, 1, 2, ... with nothing missing or repeated; a complete stream has all."""
    duplicated = sum(len(o.ids) - len(set(o.ids)) for o in outcomes)
    # A complete stream must have every part; one that failed, every part before its last.
    missing = sum(
        (PARTS if o.ending == "end" else max(o.ids, default=-1) + 1) - len(set(o.ids)) for o in outcomes
    )
    disordered = sum(1 for o in outcomes if o.ids != tuple(sorted(o.ids)))
    short = sum(1 for o in outcomes if o.ending == "end" and o.end_parts != PARTS)
    figures.notes["parts missing / duplicated / streams out of order, as callers saw them"] = (
        f"{missing} / {duplicated} / {disordered}"
    )
    figures.require(missing == duplicated == disordered == 0, "a caller saw a gap, a duplicate or disorder")
    figures.require(short == 0, f"{short} end events did not count {PARTS} parts")


SCENARIOS = [
    Scenario(
        "kill-mid-stream",
        "triple",
        False,
        f"24 callers reading {PARTS}-part SSE streams ({INTERVAL:g} s apart) via 2 gateways "
        f"(idle {SHORT_IDLE:g} s / {LONG_IDLE:g} s); SIGKILL 1 of 2 workers mid-stream",
        kill_mid_stream,
    )
]

"""Hostile input: schemathesis on the OpenAPI, oversized and reserved headers, bad names, garbage records."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from chaos import records
from chaos.http import Connection
from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing
from chaos.service import Service
from chaos.stack import Kafka, Stack

BODY_LIMIT = 983_616  # the gateway's default: librdkafka message.max.bytes - 16384
GARBAGE = 40

# (what, path, headers, body, allowed statuses)
Probe = tuple[str, str, list[tuple[str, str]], bytes, set[int]]


def _probes(publish_topic: str) -> list[Probe]:
    echo = "/rpc/chaos.echo"
    body = b'{"nonce": "probe"}'
    reserved = [
        (name, "x") for name in ("rpc-correlation-id", "RPC-Reply-To", "rpc-deadline", "rpc-reply-partition")
    ]
    probes: list[Probe] = [
        ("body at the limit", echo, [], b"x" * BODY_LIMIT, {200}),
        ("body limit + 1", echo, [], b"x" * (BODY_LIMIT + 1), {413}),
        ("body 2 MB", echo, [], b"x" * 2_000_000, {413}),
        ("forwarded header 20 KB", echo, [("x-request-id", "a" * 20_000)], body, {431}),
        ("other header 20 KB", echo, [("x-junk", "a" * 20_000)], body, {200, 400, 431}),
        # Not forwarded, so no 431 from the gateway; the HTTP server must still cap what it buffers.
        ("other header 1 MB", echo, [("x-junk", "a" * 1_000_000)], body, {0, 400, 431}),
        ("60 headers of 1 KB", echo, [(f"x-h{i}", "b" * 1000) for i in range(60)], body, {200, 400, 431}),
        ("duplicated content-type", echo, [("content-type", "a/b"), ("content-type", "c/d")], body, {400}),
        (
            "duplicated traceparent",
            echo,
            [("traceparent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")] * 2,
            body,
            {400},
        ),
        ("malformed traceparent", echo, [("traceparent", "zz")], body, {400}),
        (
            # Readers disagree on which of two values counts (first or last): dedupe becomes ambiguous.
            "duplicated idempotency-key",
            echo,
            [("idempotency-key", "a"), ("idempotency-key", "b")],
            body,
            {400},
        ),
        *((f"reserved header {name}", echo, [(name, value)], body, {400}) for name, value in reserved),
        ("method ../etc", "/rpc/..%2Fetc", [], body, {400, 404}),
        ("method __consumer_offsets", "/rpc/__consumer_offsets", [], body, {400}),
        ("method 250 chars", "/rpc/" + "m" * 250, [], body, {400}),
        ("method unicode", "/rpc/m%C3%A9todo", [], body, {400}),
        ("method NUL", "/rpc/a%00b", [], body, {400}),
        ("method unknown", "/rpc/no.such.method", [], body, {404}),
        ("publish __consumer_offsets", "/publish/__consumer_offsets", [], body, {404}),
        ("publish new topic", f"/publish/auto-created-{uuid.uuid4().hex[:6]}", [], body, {404}),
        ("publish ../x", "/publish/..%2Fx", [], body, {404}),
        ("publish 300 chars", "/publish/" + "t" * 300, [], body, {404}),
        ("publish allowed", f"/publish/{publish_topic}", [], body, {202}),
    ]
    return probes


async def _probe(gateway: Service, probe: Probe) -> tuple[int, float]:
    _, path, headers, body, _ = probe
    connection = Connection(gateway.url)
    started = time.perf_counter()
    try:
        response = await connection.raw(path, body, [("content-type", "application/json"), *headers])
        return response.status, time.perf_counter() - started
    except (OSError, asyncio.IncompleteReadError):
        return 0, time.perf_counter() - started
    finally:
        connection.close()


def _schemathesis(gateway: Service, budget: float) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("st")),
        "run",
        f"{gateway.url}/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "25",
        "--request-timeout",
        "6",
        "--generation-deterministic",
        "--no-color",
        # The catalog lists the chaos handlers too: chaos.stall freezes its worker, and valid
        # calls of count and work last up to minutes, by design (each would cost the 6 s timeout).
        "--exclude-path-regex",
        r"^/rpc/chaos\.(stall|count|work|work_sync)$",
    ]
    # schemathesis keeps an example database in its working directory: keep it out of the repo.
    with tempfile.TemporaryDirectory(prefix="chaos-schemathesis-") as scratch:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=budget, check=False, cwd=scratch
        )
    return result.returncode, (result.stdout + result.stderr)[-1500:]


async def bad_input(kafka: Kafka, figures: Figures) -> None:
    """Every probe gets its defined status, never a 500; no topic appears; consumers keep flowing."""
    stack = Stack(kafka, "bad-input")
    events = f"events-{uuid.uuid4().hex[:8]}"
    kafka.create_topics({events: 1})
    async with closing(stack, figures):
        worker = stack.add_worker()
        gateway = stack.add_gateway(GATEWAY_PUBLISH_TOPICS=f'["{events}"]')
        await asyncio.to_thread(stack.wait_ready)
        before = await asyncio.to_thread(records.topic_names, kafka.bootstrap_servers)
        probes: dict[str, int] = {}
        for probe in _probes(events):
            status, elapsed = await _probe(gateway, probe)
            probes[probe[0]] = status
            figures.require(status in probe[4], f"{probe[0]}: {status}, expected {sorted(probe[4])}")
            figures.require(elapsed < 5.1, f"{probe[0]}: took {elapsed:.1f} s")
        figures.notes["probes"] = probes
        code, tail = await asyncio.to_thread(_schemathesis, gateway, 120)
        figures.notes["schemathesis exit status"] = code
        figures.require(code == 0, f"schemathesis found server errors:\n{tail}")
        await asyncio.to_thread(
            records.inject_garbage, kafka.bootstrap_servers, stack.requests, stack.replies, GARBAGE
        )
        # Calls to unknown methods (a probe above) get their 404 from the gateway, before Kafka.
        dead = await asyncio.to_thread(
            records.eventually,
            lambda: records.end_offset(kafka.bootstrap_servers, stack.dead_letters) >= GARBAGE,
            30,
        )
        dropped = await asyncio.to_thread(
            records.eventually,
            lambda: (
                gateway.metric("rpcgw_malformed_replies_total")
                + gateway.metric("rpcgw_unmatched_replies_total")
                >= GARBAGE
            ),
            30,
        )
        figures.notes["garbage request records / dead-lettered"] = (
            f"{GARBAGE} / {records.end_offset(kafka.bootstrap_servers, stack.dead_letters)}"
        )
        figures.notes["garbage reply records / malformed + unmatched"] = (
            f"{GARBAGE} / {gateway.metric('rpcgw_malformed_replies_total'):.0f}"
            f" + {gateway.metric('rpcgw_unmatched_replies_total'):.0f}"
        )
        figures.notes["dead-letter reasons"] = await asyncio.to_thread(
            records.dead_letter_reasons, kafka.bootstrap_servers, stack.dead_letters
        )
        figures.notes["worker rpcworker_dead_lettered_total"] = worker.metric("rpcworker_dead_lettered_total")
        reasons = figures.notes["dead-letter reasons"]
        assert isinstance(reasons, dict)
        from_garbage = sum(n for reason, n in reasons.items() if reason.endswith("(garbage)"))
        figures.require(
            dead and from_garbage == GARBAGE, f"{from_garbage} of {GARBAGE} garbage records dead-lettered"
        )
        figures.require(dropped, "not every garbage reply record was dropped and counted")
        load = Load(stack.urls, total=500, rate=100, concurrency=32, wait=3)
        await load.run()
        stack.account(figures, load)
        figures.require(figures.statuses == {200: 500}, "the consumers did not keep flowing after garbage")
        after = await asyncio.to_thread(records.topic_names, kafka.bootstrap_servers)
        figures.notes["topics created by the gateway or workers"] = sorted(after - before)
        figures.require(after == before, f"topics appeared: {sorted(after - before)}")


SCENARIOS = [
    Scenario(
        "bad-input",
        "single",
        True,
        "schemathesis, oversize bodies/headers, reserved and duplicated headers, bad names, garbage records",
        bad_input,
    )
]

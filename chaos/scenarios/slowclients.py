"""Slow clients: 3,000 idle connections, 100 heads sent a byte a second and a body cut short.

The gateway runs with its default deadlines (GATEWAY_HEAD_TIMEOUT=10, GATEWAY_BODY_TIMEOUT=10).
Every hostile connection must be closed by the gateway at its deadline, counted by reason and
reported in a few aggregated log lines, while normal callers and a kubelet-style /healthz probe
are served throughout, and the descriptors and memory the attack took are given back.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import psutil

from bench.machine import raise_open_files
from chaos.load import Load
from chaos.report import Figures
from chaos.scenarios.catalogue import Scenario, closing
from chaos.service import Service
from chaos.stack import Kafka, Stack

IDLE = 3000
SLOW = 100
HEAD_TIMEOUT = 10.0
BODY_TIMEOUT = 10.0
"""The gateway's defaults, which this scenario keeps."""
SLACK = 3.0
"""How long past its deadline a hostile connection may stay open (the sweep runs every second)."""
PROBE_EVERY = 0.5
PROBE_LIMIT = 1.0
"""Slowest /healthz answer allowed (the kubelet's default timeoutSeconds is 1)."""


Hostile = asyncio.Task[tuple[float, bytes]]
"""One hostile connection: seconds until the gateway closed it, and the start of what it said."""


async def _hostile(host: str, port: int, first: bytes = b"", trickle: bytes = b"") -> Hostile:
    """Open a connection, send ``first`` at once and ``trickle`` a byte a second; watch it close."""
    reader, writer = await asyncio.open_connection(host, port)
    opened = time.monotonic()
    writer.write(first)

    async def send_slowly() -> None:
        for byte in trickle:  # ends when cancelled, or with the connection (ConnectionError)
            await asyncio.sleep(1.0)  # the attacker's pace: one byte a second
            writer.write(bytes([byte]))
            await writer.drain()

    async def watch() -> tuple[float, bytes]:
        sender = asyncio.create_task(send_slowly())
        try:
            data = await asyncio.wait_for(_until_closed(reader), HEAD_TIMEOUT + 10 * SLACK)
            return time.monotonic() - opened, data[:40]
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            writer.close()

    return asyncio.create_task(watch())


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the gateway sent until it closed the connection, by FIN or by reset.

    A close is a reset when the client's trickled byte reached a socket the gateway had already
    closed; ``reader.read()`` would then raise and drop the answer received before it.
    """
    received = bytearray()
    try:
        while chunk := await reader.read(65_536):
            received += chunk
    except ConnectionResetError:
        pass
    return bytes(received)


async def _probe(host: str, port: int) -> tuple[int, float]:
    """One kubelet-style GET /healthz on a new connection: status (0: none) and seconds."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET /healthz HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n".encode())
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        status = int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0
    except (OSError, TimeoutError, ValueError):
        status = 0
    return status, time.monotonic() - started


def _usage(gateway: Service) -> tuple[int, int]:
    """RSS (bytes) and open descriptors of the gateway process."""
    process = psutil.Process(gateway.process.pid)
    return int(process.memory_info().rss), process.num_fds()


async def slow_clients(kafka: Kafka, figures: Figures) -> None:
    """Hostile connections hit their deadlines while a paced load and /healthz probes pass."""
    raise_open_files(IDLE + SLOW + 1000)
    stack = Stack(kafka, "slow-clients")
    async with closing(stack, figures):
        stack.add_worker()
        gateway = stack.add_gateway(GATEWAY_LOG_LEVEL="INFO")
        await asyncio.to_thread(stack.wait_ready)
        host, port = "127.0.0.1", gateway.port
        rss_before, fds_before = _usage(gateway)
        peak = [(rss_before, fds_before)]
        probes: list[tuple[int, float]] = []
        attacking = asyncio.Event()

        async def sample() -> None:
            while not attacking.is_set():
                peak.append(await asyncio.to_thread(_usage, gateway))
                await asyncio.sleep(0.2)  # sampling interval of another process's usage

        async def probe() -> None:
            while not attacking.is_set():
                probes.append(await _probe(host, port))
                await asyncio.sleep(PROBE_EVERY)  # the probe's period, as a kubelet's

        watchers = [asyncio.create_task(sample()), asyncio.create_task(probe())]
        started = time.monotonic()
        idle = [await _hostile(host, port) for _ in range(IDLE)]
        slow = [
            await _hostile(
                host, port, trickle=f"GET /healthz HTTP/1.1\r\nhost: {host}\r\nx-n: {i}\r\n\r\n".encode()
            )
            for i in range(SLOW)
        ]
        short = await _hostile(
            host,
            port,
            f"POST /rpc/chaos.echo HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000\r\n\r\n{{".encode(),
        )
        figures.notes["hostile connections opened in"] = f"{time.monotonic() - started:.1f} s"
        load = Load(stack.urls, total=450, rate=30, concurrency=8, wait=3)
        await load.run()
        idle_lives = await asyncio.gather(*idle)
        slow_lives = await asyncio.gather(*slow)
        short_life = await short
        attacking.set()
        await asyncio.gather(*watchers)
        stack.account(figures, load)
        closed = await asyncio.to_thread(gateway.by_label, "rpcgw_connections_closed_total", "reason")
        # The sweep after the last close trims the heap; sample once that has had time to run.
        await asyncio.sleep(2.0)  # two sweep periods
        rss_after, fds_after = await asyncio.to_thread(_usage, gateway)
        log = gateway.output(1 << 24).splitlines()
        observed = Observed(
            idle=idle_lives,
            slow=slow_lives,
            short=short_life,
            probes=probes,
            closed=closed,
            log_lines=sum("connection(s) since the last report" in line for line in log),
        )
        figures.notes["gateway RSS before / peak / after"] = (
            f"{rss_before >> 20} / {max(r for r, _ in peak) >> 20} / {rss_after >> 20} MiB"
        )
        figures.notes["gateway descriptors before / peak / after"] = (
            f"{fds_before} / {max(f for _, f in peak)} / {fds_after}"
        )
        figures.require(figures.statuses == {200: load.total}, f"normal callers saw {figures.statuses}")
        figures.require(
            fds_after <= fds_before + 10, f"descriptors not given back: {fds_before} -> {fds_after}"
        )
        _judge(figures, observed)


@dataclass(frozen=True)
class Observed:
    """What the hostile connections and the probes saw, and what the gateway counted and logged."""

    idle: list[tuple[float, bytes]]
    slow: list[tuple[float, bytes]]
    short: tuple[float, bytes]
    probes: list[tuple[int, float]]
    closed: dict[str, float]
    log_lines: int


def _judge(figures: Figures, observed: Observed) -> None:
    idle_seconds = [seconds for seconds, _ in observed.idle]
    slow_seconds = [seconds for seconds, _ in observed.slow]
    short_seconds, short_answer = observed.short
    statuses = [status for status, _ in observed.probes]
    slowest_probe = max(seconds for _, seconds in observed.probes)
    figures.notes["idle connections closed after (min / median / max)"] = _spread(idle_seconds)
    figures.notes["one-byte-a-second heads cut after (min / median / max)"] = _spread(slow_seconds)
    figures.notes["short body answered after"] = f"{short_seconds:.1f} s: {short_answer!r}"
    figures.notes["/healthz probes: answered 200 / sent; slowest"] = (
        f"{statuses.count(200)} / {len(statuses)}; {slowest_probe * 1000:.0f} ms"
    )
    figures.notes["rpcgw_connections_closed_total"] = observed.closed
    figures.notes["gateway log lines about closed connections"] = observed.log_lines
    figures.require(
        len(statuses) >= 10 and set(statuses) == {200}, f"/healthz answered {sorted(set(statuses))}"
    )
    figures.require(slowest_probe < PROBE_LIMIT, "a /healthz probe took a second or more")
    figures.require(
        all(data == b"" for _, data in observed.idle),
        "an idle connection was answered instead of just closed",
    )
    figures.require(
        all(HEAD_TIMEOUT - 0.5 <= s <= HEAD_TIMEOUT + SLACK for s in idle_seconds),
        f"idle connections closed after {_spread(idle_seconds)}, not at the head timeout",
    )
    figures.require(
        all(data.startswith(b"HTTP/1.1 408 ") for _, data in observed.slow),
        "a slow head was not answered 408",
    )
    figures.require(
        all(HEAD_TIMEOUT - 0.5 <= s <= HEAD_TIMEOUT + SLACK for s in slow_seconds),
        f"slow heads cut after {_spread(slow_seconds)}, not at the head timeout",
    )
    figures.require(
        short_answer.startswith(b"HTTP/1.1 408 ")
        and BODY_TIMEOUT - 0.5 <= short_seconds <= BODY_TIMEOUT + SLACK,
        "the short body was not answered 408 at the body timeout",
    )
    figures.require(
        observed.closed.get("head_timeout") == IDLE + SLOW and observed.closed.get("body_timeout") == 1,
        f"closes counted {observed.closed}, expected {IDLE + SLOW} head_timeout and 1 body_timeout",
    )
    figures.require(
        1 <= observed.log_lines <= 10, f"{observed.log_lines} log lines about closed connections, not a few"
    )


def _spread(values: list[float]) -> str:
    return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f} s"


SCENARIOS = [
    Scenario(
        "slow-clients",
        "single",
        True,
        f"{IDLE} idle connections, {SLOW} heads at 1 byte/s, a body cut short; default deadlines",
        slow_clients,
    )
]

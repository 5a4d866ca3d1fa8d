"""SIGTERM on a real ``python -m gateway`` process with requests in flight: they complete, then it exits."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from devstack.ports import claim

from .harness import Gate, Topics, working


class GatewayProcess:
    """A gateway subprocess whose JSON log lines can be awaited."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, object]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for raw in self.process.stderr:
            try:
                line = orjson.loads(raw)
            except orjson.JSONDecodeError:
                line = {"message": raw.decode(errors="replace").rstrip()}
            async with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    async def logged(self, message: str, within: float = 60) -> None:
        """Wait until a log line contains ``message``."""

        def seen() -> bool:
            return any(message in str(line.get("message", "")) for line in self.lines)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(seen), within)

    async def exit_code(self, within: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await self._reader
        return code


@pytest.fixture
async def gateway_process(topics: Topics) -> AsyncIterator[tuple[GatewayProcess, str]]:
    port = claim(1)[0]
    env = {
        **os.environ,
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(port),
        "GATEWAY_REQUEST_TOPIC": topics.requests,
        "GATEWAY_REPLY_TOPIC": topics.replies,
        "GATEWAY_CATALOG_TOPIC": topics.catalog,
        "GATEWAY_MAX_TIMEOUT": "20",
        "GATEWAY_SHUTDOWN_GRACE": "30",
        "GATEWAY_AUTH": "none",
        "KAFKA_BOOTSTRAP_SERVERS": topics.kafka.bootstrap_servers,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        env=env,
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    gateway = GatewayProcess(process)
    try:
        yield gateway, f"http://127.0.0.1:{port}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_sigterm_lets_in_flight_requests_finish_then_exits_cleanly(
    topics: Topics, gateway_process: tuple[GatewayProcess, str]
) -> None:
    gateway, url = gateway_process
    gate = Gate(expected=10)
    async with working(topics, gate.registry):
        await gateway.logged("gateway accepting requests")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/readyz")).status_code == 200
            in_flight = [
                asyncio.create_task(http.post("/rpc/hold", content=b"%d" % i, headers={"prefer": "wait=20"}))
                for i in range(10)
            ]
            await asyncio.wait_for(gate.arrived.wait(), 30)  # all ten are pending in the gateway
            gateway.process.send_signal(signal.SIGTERM)
            await gateway.logged("Waiting for connections to close")
            async with httpx.AsyncClient(base_url=url, timeout=5) as newcomer:
                with pytest.raises(httpx.ConnectError):
                    await newcomer.post("/rpc/hold", content=b"late")
            gate.release.set()
            answered = await asyncio.gather(*in_flight)
        assert [r.status_code for r in answered] == [200] * 10
        assert [r.content for r in answered] == [b"%d" % i for i in range(10)]
        # uvicorn re-raises the captured SIGTERM once shutdown is complete, so the parent sees it.
        assert await gateway.exit_code() == -signal.SIGTERM
    messages = [line.get("message") for line in gateway.lines]
    assert "gateway stopped" in messages  # lifespan shutdown ran: drained, flushed, closed
    assert not any(line.get("level") == "error" for line in gateway.lines)
    assert gate.count == 10

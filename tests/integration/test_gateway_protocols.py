"""The gateway under uvicorn's own HTTP protocols: correct without its protocol's optimisations.

`gateway.server` falls back to uvicorn's h11 protocol when the installed uvicorn is not the one
`gateway.httpprotocol` was verified with; the RPC endpoint then learns of disconnects from a
task waiting in ``receive()`` instead of the connection-closed extension.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from gateway.app import create_app

from .harness import Gate, Topics, gateway_of, metric, serving, working


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_round_trips_and_disconnects_under_uvicorns_own_protocols(topics: Topics, http: str) -> None:
    gate = Gate(expected=1)
    app = create_app(topics.settings(), topics.kafka_settings())
    async with working(topics, gate.registry), serving(app, http) as url:
        async with httpx.AsyncClient(base_url=url, timeout=20) as client:
            answered = await client.post("/rpc/headers", content=b"{}", headers={"x-tenant": "t1"})
        assert answered.status_code == 200
        assert orjson.loads(answered.content)["extra"] == [["x-tenant", "t1"]]
        assert "x-correlation-id" in answered.headers

        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /rpc/hold HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\nprefer: wait=60\r\n\r\nhi")
        await asyncio.wait_for(gate.arrived.wait(), 30)
        pending = gateway_of(app).client._pending
        assert len(pending) == 1
        writer.close()
        await asyncio.wait_for(pending.emptied(), 10)  # long before the 60 s deadline
        gate.release.set()
        del reader
    assert metric(app, "rpcgw_requests_total", method="hold", outcome="disconnected") == 1

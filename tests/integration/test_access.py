"""Access control on the real path: uvicorn, the gateway, real Kafka and the real worker runtime."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
import websockets

from gateway.access import AccessSettings
from gateway.app import GatewayAPI, create_app
from tests.issuer import AUDIENCE, ISSUER, Issuer

from .harness import Topics, gateway_of, listening, metric, serving, working


async def served(app: object, method: str, within: float = 30.0) -> None:
    """Wait until the gateway's catalog has ``method`` (the worker announces it on start)."""
    catalog = gateway_of(app).catalog  # type: ignore[arg-type]
    assert catalog is not None
    async with asyncio.timeout(within):
        while method not in catalog.served:  # noqa: ASYNC110 - the catalog consumer's state
            await asyncio.sleep(0.01)


def guarded_app(topics: Topics, jwks_url: str, policy: dict[str, Any], **access: Any) -> GatewayAPI:
    """A gateway streaming the events topic that takes bearer tokens from ``jwks_url``."""
    settings = AccessSettings(
        mode="jwt", jwks_url=jwks_url, issuer=ISSUER, audience=AUDIENCE, policy=policy, **access
    )
    gateway = topics.settings(stream_topics=[topics.events])
    return create_app(gateway, topics.kafka_settings(), access=settings)


async def test_callers_are_authenticated_authorised_and_known_to_the_worker(topics: Topics) -> None:
    issuer = Issuer()
    issuer.add_key("k1", "ec")
    with issuer.serving() as jwks_url:
        policy = {
            "methods": {"echo": ["rpc"], "whoami": []},
            "routes": {"GET /me": ["profile"]},
            "stream": {topics.events: ["events:read"]},
        }
        app = guarded_app(topics, jwks_url, policy, forward_claims=["tenant"])
        alice = {"authorization": f"Bearer {issuer.token('k1', subject='alice', scope='rpc', tenant='acme')}"}
        profile = {"authorization": f"Bearer {issuer.token('k1', subject='bob', scope='profile')}"}
        async with working(topics), serving(app) as url, httpx.AsyncClient(base_url=url) as http:
            await served(app, "whoami")
            missing = await http.post("/rpc/echo", content=b"{}")
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == 'Bearer realm="kafka-rpc-gateway"'

            echoed = await http.post("/rpc/echo", content=b'{"a": 1}', headers=alice)
            assert echoed.status_code == 200
            assert echoed.content == b'{"a": 1}'
            me = await http.post("/rpc/whoami", headers=alice)
            assert orjson.loads(me.content) == {
                "subject": "alice",
                "scopes": ["rpc"],
                "claims": {"tenant": "acme"},
            }

            # The route has its own rule: bob may read his profile there but not call echo.
            assert (await http.get("/me", headers=alice)).status_code == 403
            routed = await http.get("/me", headers=profile)
            assert routed.status_code == 200
            assert orjson.loads(routed.content)["subject"] == "bob"
            assert (await http.post("/rpc/echo", content=b"{}", headers=profile)).status_code == 403

            # A 1 MB token never reaches the verifier: the head limit answers 431 before the app runs.
            huge = await http.post("/rpc/echo", headers={"authorization": "Bearer " + "x" * 1_000_000})
            assert huge.status_code == 431
            assert (await http.post("/rpc/echo", content=b"{}", headers=alice)).status_code == 200

            for path in ("/healthz", "/readyz", "/metrics"):
                assert (await http.get(path)).status_code == 200, path
            assert metric(app, "rpcgw_auth_decisions_total", outcome="allowed") == 4
            assert metric(app, "rpcgw_auth_decisions_total", outcome="forbidden") == 2
            assert metric(app, "rpcgw_auth_decisions_total", outcome="missing") == 1


async def test_a_websocket_stream_without_a_token_is_refused_with_401_before_the_upgrade(
    topics: Topics,
) -> None:
    issuer = Issuer()
    issuer.add_key("k1")
    with issuer.serving() as jwks_url:
        app = guarded_app(topics, jwks_url, {"stream": {topics.events: ["events:read"]}})
        reader = {"authorization": f"Bearer {issuer.token('k1', scope='events:read')}"}
        async with listening(app) as url:
            await asyncio.wait_for(app.state.started.wait(), 60)
            address = url.removeprefix("http://")
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(f"ws://{address}/ws/{topics.events}"):
                    pass
            assert refused.value.response.status_code == 401
            assert b'"status":401' in refused.value.response.body
            started = time.monotonic()
            async with websockets.connect(f"ws://{address}/ws/{topics.events}", additional_headers=reader):
                assert time.monotonic() - started < 30

"""Access control end to end over the in-memory cluster: who may call what, and who is refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openapi_spec_validator import validate as validate_openapi

from gateway.access import AccessSettings
from kafkarpc import protocol
from tests.fakekafka import FakeKafka
from tests.issuer import AUDIENCE, ISSUER, Issuer

from .conftest import Harness, gateway_settings, running
from .fakes import FakeWorker, echo

POLICY = {
    "methods": {"echo": ["rpc"], "admin.*": ["admin"], "open": []},
    "publish": {"events": ["events:write"]},
    "stream": {"events": ["events:read"]},
}


@pytest.fixture
def issuer() -> Issuer:
    issuer = Issuer()
    issuer.add_key("rsa-1", "rsa")
    issuer.add_key("ec-1", "ec")
    issuer.add_key("ed-1", "ed25519")
    return issuer


@pytest.fixture
def jwks_url(issuer: Issuer) -> Iterator[str]:
    with issuer.serving() as url:
        yield url


def jwt_access(jwks_url: str | None, **overrides: Any) -> AccessSettings:
    values: dict[str, Any] = {
        "mode": "jwt",
        "jwks_url": jwks_url,
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "policy": POLICY,
        "forward_claims": ["tenant"],
        **overrides,
    }
    return AccessSettings(**values)


@pytest.fixture
async def guarded(jwks_url: str, cluster: FakeKafka) -> AsyncIterator[Harness]:
    settings = gateway_settings(default_timeout=2.0, max_timeout=5.0, publish_topics=["events"])
    async with running(settings, cluster, access=jwt_access(jwks_url)) as harness:
        yield harness


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def produced(cluster: FakeKafka, topic: str = "requests") -> int:
    return len(cluster.records(topic))


def assert_unauthorized(response: httpx.Response, error: bool) -> dict[str, Any]:
    assert response.status_code == 401
    assert response.headers["content-type"] == protocol.PROBLEM_JSON
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="kafka-rpc-gateway"')
    assert ('error="invalid_token"' in challenge) is error
    body: dict[str, Any] = orjson.loads(response.content)
    assert body["status"] == 401
    return body


async def test_no_credential_is_401_with_a_challenge_and_nothing_is_produced(
    guarded: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = await guarded.http.post("/rpc/echo", content=b"{}")
    assert_unauthorized(response, error=False)
    assert produced(guarded.cluster) == 0
    assert guarded.metric("rpcgw_auth_decisions_total", outcome="missing") == 1
    assert any(getattr(r, "reason", None) == "missing" for r in caplog.records)


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1", "ed-1"])
async def test_a_valid_token_reaches_the_worker_with_the_callers_identity(
    guarded: Harness, issuer: Issuer, kid: str
) -> None:
    seen: list[protocol.Request] = []

    def handler(request: protocol.Request) -> protocol.Reply:
        seen.append(request)
        return echo(request)

    token = issuer.token(kid, subject="alice", scope="rpc orders", tenant="acme", email="a@acme.test")
    with FakeWorker(guarded.cluster, {"echo": handler}):
        response = await guarded.http.post("/rpc/echo", content=b'{"x": 1}', headers=bearer(token))
    assert response.status_code == 200
    assert response.content == b'{"x": 1}'
    # Only the configured claims travel; the token itself never does.
    assert seen[0].caller == protocol.Identity("alice", ("rpc", "orders"), {"tenant": "acme"})
    assert all(token.encode() not in (value or b"") for _, value in seen[0].headers())
    assert guarded.metric("rpcgw_auth_decisions_total", outcome="allowed") == 1


def _unsigned(issuer: Issuer) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    claims = issuer.token("rsa-1").split(".")[1]
    return f"{header}.{claims}."


def _hmac_with_public_key(issuer: Issuer) -> str:
    # The classic key-confusion attack: HS256 "signed" with the RSA public key as the secret.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"rsa-1"}').rstrip(b"=")
    claims = issuer.token("rsa-1").split(".")[1].encode()
    signature = hmac.new(issuer.public_pem("rsa-1"), header + b"." + claims, hashlib.sha256).digest()
    return (header + b"." + claims + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def _forged(issuer: Issuer) -> str:
    stranger = Issuer()
    stranger.add_key("rsa-1")  # same kid, different key
    return stranger.token("rsa-1")


BAD_TOKENS: dict[str, Callable[[Issuer], str]] = {
    "expired": lambda issuer: issuer.token("rsa-1", now=1_000_000_000),
    "not_yet_valid": lambda issuer: issuer.token("rsa-1", nbf=2**40),
    "wrong_audience": lambda issuer: issuer.token("rsa-1", aud="someone-else"),
    "wrong_issuer": lambda issuer: issuer.token("rsa-1", iss="https://evil.test"),
    "bad_signature": _forged,
    "bad_algorithm": _unsigned,
    "bad_algorithm ": _hmac_with_public_key,
    "too_large": lambda issuer: issuer.token("rsa-1", padding="x" * 9_000),
    "malformed": lambda issuer: "not.a.token",
}


@pytest.mark.parametrize("reason", BAD_TOKENS)
async def test_a_bad_token_is_401_invalid_token_counted_by_reason_and_never_logged(
    guarded: Harness, issuer: Issuer, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = BAD_TOKENS[reason](issuer)
    with FakeWorker(guarded.cluster, {"echo": echo}):
        response = await guarded.http.post("/rpc/echo", content=b"{}", headers=bearer(token))
    assert_unauthorized(response, error=True)
    assert produced(guarded.cluster) == 0
    assert guarded.metric("rpcgw_auth_decisions_total", outcome=reason.strip()) == 1
    assert token not in caplog.text
    signature = token.split(".")[-1]
    assert not signature or signature not in caplog.text


async def test_a_valid_caller_without_the_scope_is_403(guarded: Harness, issuer: Issuer) -> None:
    token = issuer.token("ec-1", scope="orders")
    response = await guarded.http.post("/rpc/echo", content=b"{}", headers=bearer(token))
    assert response.status_code == 403
    assert "needs one of the scopes: rpc" in orjson.loads(response.content)["detail"]
    assert produced(guarded.cluster) == 0
    assert guarded.metric("rpcgw_auth_decisions_total", outcome="forbidden") == 1
    # A method no rule names is refused even to a caller with every scope (default deny).
    token = issuer.token("ec-1", scope="rpc admin events:write events:read")
    assert (await guarded.http.post("/rpc/unlisted", content=b"{}", headers=bearer(token))).status_code == 403
    assert (
        await guarded.http.post("/rpc/admin.reset", content=b"{}", headers=bearer(token))
    ).status_code != 403


async def test_publish_and_stream_topics_need_their_own_scopes(guarded: Harness, issuer: Issuer) -> None:
    reader = bearer(issuer.token("rsa-1", scope="events:read"))
    writer = bearer(issuer.token("rsa-1", scope="events:write"))
    assert (await guarded.http.post("/publish/events", content=b"{}", headers=reader)).status_code == 403
    assert (await guarded.http.post("/publish/events", content=b"{}", headers=writer)).status_code == 202
    assert (await guarded.http.get("/stream/events", headers=writer)).status_code == 403
    assert (await guarded.http.post("/publish/events", content=b"{}")).status_code == 401
    caller = dict(guarded.cluster.records("events")[0].headers() or ())[protocol.CALLER]
    assert caller is not None
    assert protocol.Identity.decode(caller.decode()).subject == "alice"


async def test_probes_metrics_and_docs_need_no_credential(guarded: Harness) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert (await guarded.http.get(path)).status_code == 200, path
    document = orjson.loads((await guarded.http.get("/openapi.json")).content)
    assert document["components"]["securitySchemes"] == {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    assert document["security"] == [{"bearer": []}]
    validate_openapi(document)


async def test_a_rotated_key_is_fetched_once_and_made_up_key_ids_cannot_make_it_fetch_again(
    jwks_url: str, issuer: Issuer, cluster: FakeKafka
) -> None:
    access = jwt_access(jwks_url, jwks_min_refresh=0)
    async with running(gateway_settings(), cluster, access=access) as harness:
        assert issuer.fetches == 1
        issuer.add_key("rsa-2")
        with FakeWorker(cluster, {"echo": echo}):
            response = await harness.http.post("/rpc/echo", headers=bearer(issuer.token("rsa-2")))
        assert response.status_code == 200
        assert issuer.fetches == 2
    issuer.fetches = 0
    async with running(gateway_settings(), cluster, access=jwt_access(jwks_url)) as harness:
        stranger = Issuer()
        for n in range(5):
            stranger.add_key(f"made-up-{n}")
            response = await harness.http.post("/rpc/echo", headers=bearer(stranger.token(f"made-up-{n}")))
            assert_unauthorized(response, error=True)
        assert issuer.fetches == 1  # the one at start: within GATEWAY_AUTH_JWKS_MIN_REFRESH, no more
        assert harness.metric("rpcgw_auth_decisions_total", outcome="unknown_key") == 5


async def test_a_hanging_key_endpoint_delays_only_the_unknown_key_and_never_the_known_ones(
    jwks_url: str, issuer: Issuer, cluster: FakeKafka
) -> None:
    access = jwt_access(jwks_url, jwks_min_refresh=0, jwks_timeout=2.0)
    async with running(gateway_settings(), cluster, access=access) as harness:
        issuer.mode = "hang"
        issuer.add_key("rsa-late")
        with FakeWorker(cluster, {"echo": echo}):
            stuck = asyncio.create_task(
                harness.http.post("/rpc/echo", headers=bearer(issuer.token("rsa-late")))
            )
            known = await harness.http.post("/rpc/echo", headers=bearer(issuer.token("rsa-1")))
            assert known.status_code == 200
            assert not stuck.done()
            assert_unauthorized(await stuck, error=True)  # after GATEWAY_AUTH_JWKS_TIMEOUT
        assert harness.metric("rpcgw_jwks_fetches_total", outcome="error") == 1


async def test_a_garbage_key_set_keeps_the_gateway_up_and_refuses_tokens(
    jwks_url: str, issuer: Issuer, cluster: FakeKafka, caplog: pytest.LogCaptureFixture
) -> None:
    issuer.mode = "garbage"
    async with running(gateway_settings(), cluster, access=jwt_access(jwks_url)) as harness:
        assert harness.metric("rpcgw_jwks_fetches_total", outcome="error") == 1
        assert "could not fetch the token signing keys" in caplog.text
        response = await harness.http.post("/rpc/echo", headers=bearer(issuer.token("rsa-1")))
        assert_unauthorized(response, error=True)
        assert (await harness.http.get("/healthz")).status_code == 200


async def test_a_pem_key_file_verifies_tokens(tmp_path: Path, issuer: Issuer, cluster: FakeKafka) -> None:
    key_file = tmp_path / "issuer.pem"
    key_file.write_bytes(issuer.public_pem("ed-1"))
    access = jwt_access(None, jwt_key_file=key_file)
    async with running(gateway_settings(), cluster, access=access) as harness:
        with FakeWorker(cluster, {"echo": echo}):
            good = await harness.http.post("/rpc/echo", headers=bearer(issuer.token("ed-1")))
            bad = await harness.http.post("/rpc/echo", headers=bearer(issuer.token("rsa-1")))
        assert good.status_code == 200
        assert_unauthorized(bad, error=True)


async def test_one_caller_over_its_fair_share_gets_429_while_others_are_served(
    jwks_url: str, issuer: Issuer, cluster: FakeKafka
) -> None:
    def handler(request: protocol.Request) -> protocol.Reply | None:
        return None if request.caller and request.caller.subject == "greedy" else echo(request)

    access = jwt_access(jwks_url, max_pending_per_caller=2)
    settings = gateway_settings(default_timeout=5.0, max_timeout=5.0, retry_after=3)
    greedy = bearer(issuer.token("rsa-1", subject="greedy"))
    async with running(settings, cluster, access=access) as harness:
        with FakeWorker(cluster, {"echo": handler}) as worker:
            waiting = [asyncio.create_task(harness.http.post("/rpc/echo", headers=greedy)) for _ in range(2)]
            assert await asyncio.to_thread(worker.wait_requests, 2)
            refused = await harness.http.post("/rpc/echo", headers=greedy)
            other = await harness.http.post(
                "/rpc/echo", headers=bearer(issuer.token("rsa-1", subject="polite"))
            )
            for task in waiting:
                task.cancel()
            await asyncio.gather(*waiting, return_exceptions=True)
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3"
        assert other.status_code == 200
        assert harness.metric("rpcgw_requests_total", method="echo", outcome="over_share") == 1


def keys_file(path: Path, *entries: tuple[str, str, list[str]]) -> Path:
    document = {
        "keys": [
            {"subject": subject, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}
            for key, subject, scopes in entries
        ]
    }
    path.write_bytes(orjson.dumps(document))
    return path


async def test_api_keys_identify_callers_and_unknown_ones_are_refused(
    tmp_path: Path, cluster: FakeKafka
) -> None:
    keys = keys_file(tmp_path / "keys.json", ("rpcgw_good", "billing", ["rpc"]))
    access = AccessSettings(mode="apikey", api_keys_file=keys, policy=POLICY)
    seen: list[protocol.Request] = []

    def handler(request: protocol.Request) -> protocol.Reply:
        seen.append(request)
        return echo(request)

    async with running(gateway_settings(), cluster, access=access) as harness:
        with FakeWorker(cluster, {"echo": handler}):
            good = await harness.http.post("/rpc/echo", headers={"x-api-key": "rpcgw_good"})
            bad = await harness.http.post("/rpc/echo", headers={"x-api-key": "rpcgw_guess"})
            none = await harness.http.post("/rpc/echo")
        assert good.status_code == 200
        assert seen[0].caller == protocol.Identity("billing", ("rpc",))
        for refused in (bad, none):
            assert refused.status_code == 401
            assert (
                refused.headers["www-authenticate"] == 'ApiKey realm="kafka-rpc-gateway", header="x-api-key"'
            )
        assert harness.metric("rpcgw_auth_decisions_total", outcome="unknown_api_key") == 1

"""The access parts on their own: policy, API key file, settings, and the required GATEWAY_AUTH."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from gateway.access import AccessSettings, Policy, Resource
from gateway.access.apikeys import ApiKeys, digest

POLICY = Policy(
    {
        "methods": {"orders.get": ["orders:read"], "orders.*": ["orders"], "*": ["admin"], "ping": []},
        "routes": {"DELETE /orders/{order_id}": ["orders:admin"]},
        "stream": {"audit-*": ["audit"]},
    }
)


@pytest.mark.parametrize(
    ("scopes", "resource", "allowed"),
    [
        (("orders:read",), Resource("methods", "orders.get"), True),
        (("orders",), Resource("methods", "orders.get"), False),  # the exact rule wins over the glob
        (("orders",), Resource("methods", "orders.create"), True),
        (("admin",), Resource("methods", "anything"), True),
        ((), Resource("methods", "ping"), True),  # an empty list: any authenticated caller
        (("orders",), Resource("routes", "DELETE /orders/{order_id}", "orders.delete"), False),
        (("orders:admin",), Resource("routes", "DELETE /orders/{order_id}", "orders.delete"), True),
        (("orders",), Resource("routes", "GET /orders/{order_id}", "orders.find"), True),  # the method's rule
        (("audit",), Resource("stream", "audit-eu"), True),
        (("admin",), Resource("publish", "audit-eu"), False),  # no publish rule: denied
    ],
)
def test_the_policy_grants_by_the_most_specific_rule_and_denies_by_default(
    scopes: tuple[str, ...], resource: Resource, allowed: bool
) -> None:
    assert POLICY.allows(scopes, resource) is allowed


def test_a_malformed_policy_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="unknown policy sections"):
        Policy({"method": {}})
    with pytest.raises(ValueError, match="list of strings"):
        Policy({"methods": {"echo": "rpc"}})


def test_api_keys_are_rotated_and_revoked_by_rewriting_the_file_without_a_restart(tmp_path: Path) -> None:
    now = [0.0]
    path = tmp_path / "keys.json"

    def write(*keys: str) -> None:
        entries = [{"subject": key, "sha256": digest(key), "scopes": ["rpc"]} for key in keys]
        path.write_bytes(orjson.dumps({"keys": entries}))

    write("rpcgw_old")
    keys = ApiKeys(path, clock=lambda: now[0])
    keys.start()
    assert keys.identify("rpcgw_old") is not None
    write("rpcgw_new")
    assert keys.identify("rpcgw_old") is not None  # not looked at again within a second
    now[0] = 2.0
    assert keys.identify("rpcgw_old") is None
    identity = keys.identify("rpcgw_new")
    assert identity is not None
    assert identity.subject == "rpcgw_new"
    path.write_bytes(b"{broken")  # a half-written file: the keys held still serve
    now[0] = 4.0
    assert keys.identify("rpcgw_new") is not None
    assert keys.identify("x" * 10_000) is None
    assert digest("rpcgw_new") == hashlib.sha256(b"rpcgw_new").hexdigest()


def test_the_key_tool_prints_a_key_whose_entry_identifies_it(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "gateway.access.apikeys", "--subject", "billing", "--scope", "rpc"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    key = printed[0].rsplit(" ", 1)[1]
    entry = orjson.loads(printed[1].split(": ", 1)[1])
    (tmp_path / "keys.json").write_bytes(orjson.dumps({"keys": [entry]}))
    keys = ApiKeys(tmp_path / "keys.json")
    keys.start()
    identity = keys.identify(key)
    assert key.startswith("rpcgw_")
    assert identity is not None
    assert identity.subject == "billing"
    assert identity.scopes == ("rpc",)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"mode": "basic"}, "must be jwt, apikey"),
        ({"mode": "jwt", "issuer": "i", "audience": "a"}, "exactly one of"),
        ({"mode": "jwt", "jwks_url": "http://x", "issuer": "i"}, "GATEWAY_AUTH_AUDIENCE"),
        (
            {"mode": "jwt", "jwks_url": "http://x", "issuer": "i", "audience": "a", "algorithms": ["HS256"]},
            "asymmetric",
        ),
        ({"mode": "apikey"}, "GATEWAY_AUTH_API_KEYS_FILE"),
    ],
)
def test_incomplete_or_unsafe_access_settings_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AccessSettings(**values)  # type: ignore[arg-type]


def test_access_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_AUTH", "apikey, jwt")
    monkeypatch.setenv("GATEWAY_AUTH_JWKS_URL", "https://idp.test/jwks.json")
    monkeypatch.setenv("GATEWAY_AUTH_ISSUER", "https://idp.test")
    monkeypatch.setenv("GATEWAY_AUTH_AUDIENCE", "rpc")
    monkeypatch.setenv("GATEWAY_AUTH_API_KEYS_FILE", "/etc/rpc/keys.json")
    monkeypatch.setenv("GATEWAY_AUTH_POLICY", '{"methods": {"*": []}}')
    settings = AccessSettings()
    assert settings.schemes == ("apikey", "jwt")
    assert settings.policy == {"methods": {"*": []}}


def test_the_gateway_does_not_start_until_gateway_auth_is_set() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    result = subprocess.run(
        [sys.executable, "-m", "gateway"],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "GATEWAY_AUTH is not set" in result.stderr

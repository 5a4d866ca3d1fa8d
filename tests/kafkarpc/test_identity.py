"""The authenticated caller on the wire (``rpc-caller``)."""

from __future__ import annotations

import pytest

from kafkarpc import protocol
from kafkarpc.errors import ProtocolError


def test_the_caller_travels_on_requests_only_when_set() -> None:
    caller = protocol.Identity("alice", ("rpc", "orders"), {"tenant": "acme", "groups": ["a"]})
    request = protocol.Request("a" * 32, "replies", 0, "m", 1, b"", caller=caller)
    assert protocol.Request.from_record(b"", request.headers()).caller == caller
    anonymous = protocol.Request("a" * 32, "replies", 0, "m", 1, b"")
    assert protocol.CALLER not in dict(anonymous.headers())
    assert protocol.Request.from_record(b"", anonymous.headers()).caller is None


@pytest.mark.parametrize(
    "value",
    [
        b"not json",
        b"[]",
        b'{"scopes": []}',
        b'{"sub": ""}',
        b'{"sub": "a", "scopes": "rpc"}',
        b'{"sub": "a", "claims": []}',
    ],
)
def test_a_malformed_caller_is_a_protocol_error(value: bytes) -> None:
    headers = protocol.Request("a" * 32, "replies", 0, "m", 1, b"").headers()
    with pytest.raises(ProtocolError, match=protocol.CALLER):
        protocol.Request.from_record(b"", [*headers, (protocol.CALLER, value)])


def test_a_second_caller_header_is_a_protocol_error() -> None:
    caller = protocol.Identity("alice")
    headers = protocol.Request("a" * 32, "replies", 0, "m", 1, b"", caller=caller).headers()
    with pytest.raises(ProtocolError, match="more than once"):
        protocol.Request.from_record(
            b"", [*headers, (protocol.CALLER, protocol.Identity("mallory").encode())]
        )

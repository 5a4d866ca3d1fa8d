"""HeaderPolicy and Prefer parsing."""

from __future__ import annotations

import pytest

from gateway.errors import BadRequestError, HeadersTooLargeError
from gateway.headers import HeaderPolicy, prefer_wait
from kafkarpc import protocol


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"wait=10", 10),
        (b"respond-async, wait=5", 5),
        (b"WAIT = 7", 7),
        (b'wait="3"', 3),
        (b"wait=10;foo=bar", 10),
        (b"wait=-1", None),
        (b"wait=1.5", None),
        (b"wait=", None),
        (b"return=minimal", None),
        (b"wait=\xff", None),
    ],
)
def test_prefer_wait(value: bytes, expected: int | None) -> None:
    assert prefer_wait(value) == expected


def test_first_wait_preference_wins() -> None:
    admitted = HeaderPolicy([], 100).admit([(b"prefer", b"wait=2"), (b"prefer", b"wait=9")])
    assert admitted.wait == 2


def test_only_allow_listed_headers_travel() -> None:
    policy = HeaderPolicy(["X-Tenant", "x-request-id"], 100)
    admitted = policy.admit(
        [(b"x-tenant", b"a"), (b"authorization", b"secret"), (b"x-request-id", b"r"), (b"host", b"h")]
    )
    assert admitted.extra == [("x-tenant", b"a"), ("x-request-id", b"r")]
    assert admitted.content_type == protocol.DEFAULT_CONTENT_TYPE


def test_forwarded_headers_over_the_limit_are_431() -> None:
    with pytest.raises(HeadersTooLargeError):
        HeaderPolicy(["x-big"], 100).admit([(b"x-big", b"v" * 200)])


def test_tracestate_fields_combine_and_need_a_traceparent() -> None:
    parent = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    policy = HeaderPolicy([], 100)
    combined = policy.admit([(b"traceparent", parent), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")])
    assert combined.trace == [(protocol.TRACEPARENT, parent), (protocol.TRACESTATE, b"a=1,b=2")]
    assert policy.admit([(b"tracestate", b"a=1")]).trace == []


@pytest.mark.parametrize(
    "headers",
    [
        [(b"rpc-deadline", b"1")],
        [(b"traceparent", b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
        [(b"traceparent", b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01")],
        [(b"content-type", b"text/plain\x00")],
        [(b"content-type", b"")],
        [
            (b"traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
            (b"tracestate", b"x" * 600),
        ],
    ],
)
def test_malformed_protocol_headers_are_400(headers: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(BadRequestError):
        HeaderPolicy([], 100).admit(headers)


def test_a_forwarded_header_sent_twice_is_400_not_two_values_on_the_record() -> None:
    policy = HeaderPolicy(["idempotency-key"], 100)
    assert policy.admit([(b"idempotency-key", b"a")]).extra == [("idempotency-key", b"a")]
    with pytest.raises(BadRequestError, match="at most once"):
        policy.admit([(b"idempotency-key", b"a"), (b"idempotency-key", b"b")])

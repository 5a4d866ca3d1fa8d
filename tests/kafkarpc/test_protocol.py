"""The wire contract's optional stage timestamps (``rpc-timing``)."""

from __future__ import annotations

import pytest

from kafkarpc import protocol, stamps
from kafkarpc.errors import ProtocolError


def test_stamps_append_in_order_in_epoch_microseconds() -> None:
    timing = stamps.stamp("", "http_in", 1.5)
    timing = stamps.stamp(timing, "produced", 2.000001)
    assert timing == "http_in=1500000,produced=2000001"
    assert stamps.stamps(timing) == {"http_in": 1_500_000, "produced": 2_000_001}


def test_malformed_pairs_are_ignored_not_fatal() -> None:
    assert stamps.stamps("a=1,b=x,=3,c,d=-4,e=5") == {"a": 1, "e": 5}


def test_timing_travels_on_requests_and_replies_only_when_set() -> None:
    request = protocol.Request("a" * 32, "replies", 0, "m", 1, b"", timing="http_in=1")
    decoded = protocol.Request.from_record(b"", request.headers())
    assert decoded.timing == "http_in=1"
    untimed = protocol.Request("a" * 32, "replies", 0, "m", 1, b"")
    assert protocol.TIMING not in dict(untimed.headers())
    reply = protocol.Reply("a" * 32, 200, b"", timing="http_in=1,worker_out=2")
    assert protocol.Reply.from_record(b"", reply.headers()).timing == "http_in=1,worker_out=2"


def test_a_duplicated_timing_header_is_a_protocol_error() -> None:
    headers = [*protocol.Reply("a" * 32, 200, b"", timing="x=1").headers(), (protocol.TIMING, b"x=2")]
    with pytest.raises(ProtocolError, match="more than once"):
        protocol.Reply.from_record(b"", headers)


def test_absurdly_long_numbers_are_not_stamps() -> None:
    # int() of thousands of digits raises on Python 3.11; a worker must not crash the gateway.
    assert stamps.stamps("worker_in=1," + "worker_out=" + "9" * 5000) == {"worker_in": 1}

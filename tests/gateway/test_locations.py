"""Result locations: signed, URL-safe, and refused when malformed, tampered with, expired or foreign."""

from __future__ import annotations

import base64
import logging
import re
import time

import orjson
import pytest
from pydantic import SecretStr

from gateway.locations import (
    PREFIX,
    NoSuchResultError,
    ResultHandle,
    ResultLocations,
    signing_key,
)
from gateway.settings import GatewaySettings

KEY = b"k" * 32
CORRELATION_ID = "0123456789abcdef0123456789abcdef"


def handle(*, subject: str | None = "alice", deadline_in: float = 60.0) -> ResultHandle:
    return ResultHandle(2, 1234, CORRELATION_ID, subject, int((time.time() + deadline_in) * 1000))


@pytest.mark.parametrize("subject", ["alice", None])
def test_a_location_round_trips_to_its_handle(subject: str | None) -> None:
    locations = ResultLocations(KEY, ttl=60)
    original = handle(subject=subject)
    location = locations.location(original)
    assert location.startswith(PREFIX)
    token = location[len(PREFIX) :]
    assert re.fullmatch(r"[A-Za-z0-9_\-.]+", token)  # URL-safe as it is
    assert len(token) < 250
    assert locations.handle(token) == original


def test_a_resumed_handle_differs_only_in_its_offset() -> None:
    original = handle()
    assert original.resumed(99) == ResultHandle(2, 99, CORRELATION_ID, "alice", original.deadline_ms)


def test_a_tampered_token_is_no_result() -> None:
    locations = ResultLocations(KEY, ttl=60)
    header, payload, signature = locations.token(handle()).split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["o"] = 0  # scan from the start of the partition
    forged = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=").decode()
    with pytest.raises(NoSuchResultError) as raised:
        locations.handle(f"{header}.{forged}.{signature}")
    assert raised.value.status == 404


def test_an_expired_token_is_no_result() -> None:
    locations = ResultLocations(KEY, ttl=1)
    token = locations.token(handle(deadline_in=-10))
    with pytest.raises(NoSuchResultError, match="expired"):
        locations.handle(token)


def test_a_token_signed_with_another_key_is_no_result() -> None:
    token = ResultLocations(b"x" * 32, ttl=60).token(handle())
    with pytest.raises(NoSuchResultError):
        ResultLocations(KEY, ttl=60).handle(token)


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "x" * 2_000])
def test_garbage_is_no_result(token: str) -> None:
    with pytest.raises(NoSuchResultError):
        ResultLocations(KEY, ttl=60).handle(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        ResultLocations(b"short", ttl=60)


def test_the_key_comes_from_settings() -> None:
    settings = GatewaySettings(result_key=SecretStr("s" * 40))
    assert signing_key(settings) == b"s" * 40


def test_without_a_configured_key_a_random_one_is_used_and_the_limit_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="gateway.locations"):
        first, second = signing_key(GatewaySettings()), signing_key(GatewaySettings())
    assert len(first) == 32
    assert first != second
    assert "only this replica" in caplog.text

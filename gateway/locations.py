"""`ResultLocations`: the signed ``/results/<token>`` URLs of ``Prefer: respond-async`` requests.

Any replica answers for any result without a shared database: the token itself says where
the reply will be (partition, a lower-bound offset, correlation id), whose it is and how
long it counts. It is an HS256 JWT (RFC 7519) under a key every replica shares, so it can
be neither forged nor pointed at other offsets to scan the reply topic. Claim names are
short because the token travels in a URL.
"""

from __future__ import annotations

import logging
import math
import secrets
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import jwt

from kafkarpc import protocol

from .errors import GatewayError

if TYPE_CHECKING:
    from .settings import GatewaySettings

log = logging.getLogger(__name__)

PREFIX = "/results/"
ALGORITHM = "HS256"
MIN_KEY_BYTES = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits)."""
MAX_TOKEN_CHARS = 1_024
"""A longer token is refused unread (real ones are about 200 characters)."""
_CLAIMS = ["exp", "p", "o", "c", "d"]


class NoSuchResultError(GatewayError):
    """The token is malformed, tampered with, expired or signed with another key."""

    status, title, outcome = 404, "Not Found", "no_such_result"


class ResultGoneError(NoSuchResultError):
    """The reply was written but reply topic retention has removed it since."""

    outcome = "gone"


@dataclass(frozen=True, slots=True)
class ResultHandle:
    """Where a request's reply will be, and whose it is."""

    partition: int
    """The reply partition the request named."""
    offset: int
    """Every record of the reply is at or after this offset."""
    correlation_id: str
    subject: str | None
    """The caller who may read it; None (no authentication): whoever holds the token."""
    deadline_ms: int
    """The request's deadline, epoch ms: no reply is written after it."""

    def resumed(self, offset: int) -> ResultHandle:
        """The same handle with a later lower bound, so the next lookup reads less."""
        return replace(self, offset=offset)


class ResultLocations:
    """Signs handles into locations and verifies tokens back into handles.

    Args:
        key: The HMAC key, at least `MIN_KEY_BYTES` long; every replica needs the same one.
        ttl: Seconds a location stays valid after its request's deadline.

    Raises:
        ValueError: the key is too short.
    """

    def __init__(self, key: bytes, ttl: float) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the result key must have at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self._ttl = ttl

    def location(self, handle: ResultHandle) -> str:
        """The path that answers with ``handle``'s result."""
        return PREFIX + self.token(handle)

    def token(self, handle: ResultHandle) -> str:
        """The signed, URL-safe token naming ``handle``."""
        claims: dict[str, Any] = {
            "p": handle.partition,
            "o": handle.offset,
            "c": handle.correlation_id,
            "d": handle.deadline_ms,
            "exp": math.ceil(handle.deadline_ms / 1000 + self._ttl),
        }
        if handle.subject is not None:
            claims["s"] = handle.subject
        # No "typ" header: the token only ever comes back here, and it keeps the URL shorter.
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"typ": None})

    def handle(self, token: str) -> ResultHandle:
        """The handle ``token`` names.

        Raises:
            NoSuchResultError: malformed, tampered with, expired or signed with another key;
                the caller is not told which, so a token cannot be probed.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise NoSuchResultError("no result has this location")
        try:
            claims = jwt.decode(token, self._key, algorithms=[ALGORITHM], options={"require": _CLAIMS})
        except jwt.ExpiredSignatureError:
            raise NoSuchResultError("the result location has expired") from None
        except jwt.InvalidTokenError:
            raise NoSuchResultError("no result has this location") from None
        partition, offset, correlation_id = claims["p"], claims["o"], claims["c"]
        subject, deadline_ms = claims.get("s"), claims["d"]
        # Signed by us, so well-formed unless the key leaked or the format changed: check anyway.
        if not (
            _natural(partition)
            and _natural(offset)
            and _natural(deadline_ms)
            and isinstance(correlation_id, str)
            and protocol.CORRELATION_ID_PATTERN.fullmatch(correlation_id) is not None
            and (subject is None or isinstance(subject, str))
        ):
            raise NoSuchResultError("no result has this location")
        return ResultHandle(partition, offset, correlation_id, subject, deadline_ms)


def signing_key(settings: GatewaySettings) -> bytes:
    """``GATEWAY_RESULT_KEY``, or a random key for this process (with a warning) when unset."""
    if settings.result_key is not None:
        return settings.result_key.get_secret_value().encode()
    log.warning(
        "GATEWAY_RESULT_KEY is unset: result locations are signed with a random key, so only "
        "this replica, until it restarts, can answer for the results of its requests"
    )
    return secrets.token_bytes(MIN_KEY_BYTES)


def _natural(value: object) -> bool:
    # bool is an int subclass; JSON true must not pass for 1.
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0

"""`TokenVerifier`: bearer JWTs (RFC 7519) checked by PyJWT against the issuer's keys.

The algorithm is pinned to the configured asymmetric ones before any key is looked up, so
``alg: none`` and a token "signed" with the public key as an HMAC secret are refused
(RFC 8725). ``exp``, ``iss`` and ``aud`` are required, ``nbf`` checked when present, all
with the configured clock skew. A verified token is remembered until it expires: a
caller sending the same token again costs a dictionary lookup, not a signature check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jwt

from kafkarpc.protocol import Identity

from .keys import KeySource, UnknownKeyError

MAX_TOKEN_BYTES = 8_192
"""A longer bearer token is refused unread (real ones are about 1 KB)."""
CACHE_SIZE = 10_000
"""Verified tokens remembered at once; the oldest is forgotten first."""


class TokenRefused(Exception):
    """The token does not prove who the caller is; ``reason`` is the metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# PyJWT's exceptions, most specific first, and the reason each is counted under.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "bad_algorithm"),
    (jwt.InvalidTokenError, "malformed"),
)


class TokenVerifier:
    """Turns a bearer token into the caller's `Identity`, or refuses it."""

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str,
        algorithms: list[str],
        clock_skew: float,
        scopes_claim: str,
        forward_claims: list[str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._algorithms = algorithms
        self._skew = clock_skew
        self._scopes_claim = scopes_claim
        self._forward = forward_claims
        self._clock = clock
        self._verified: dict[str, tuple[Identity, float, float]] = {}
        """Token → (identity, nbf, exp) of tokens verified before."""

    async def start(self) -> None:
        """Load the signing keys (a key file that cannot be read stops the gateway)."""
        await self._keys.start()

    async def verify(self, token: str) -> Identity:
        """The identity ``token`` proves.

        Raises:
            TokenRefused: too large, malformed, unsigned or wrongly signed, unknown key,
                expired, not yet valid, or for another issuer or audience.
        """
        now = self._clock()
        remembered = self._verified.get(token)
        if remembered is not None:
            identity, not_before, expires = remembered
            if not_before - self._skew <= now <= expires + self._skew:
                return identity
            del self._verified[token]
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRefused("too_large", f"the token is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            if algorithm not in self._algorithms:
                raise TokenRefused("bad_algorithm", f"tokens signed with {algorithm!r} are not accepted")
            kid = header.get("kid")
            key = await self._keys.key(kid if isinstance(kid, str) else None)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._skew,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except UnknownKeyError as exc:
            raise TokenRefused("unknown_key", str(exc)) from None
        except jwt.InvalidTokenError as exc:
            reason = next(label for kind, label in _REASONS if isinstance(exc, kind))
            raise TokenRefused(reason, f"the token is not valid: {exc}") from None
        identity = self._identity(claims)
        if len(self._verified) >= CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (identity, float(claims.get("nbf", 0)), float(claims["exp"]))
        return identity

    def _identity(self, claims: dict[str, Any]) -> Identity:
        scopes = claims.get(self._scopes_claim, ())
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, (list, tuple)) or not all(isinstance(scope, str) for scope in scopes):
            raise TokenRefused("malformed", f"the {self._scopes_claim!r} claim is not a list of scopes")
        forwarded = {name: claims[name] for name in self._forward if name in claims}
        return Identity(str(claims["sub"]), tuple(scopes), forwarded)

"""Where bearer tokens' signing keys come from: the issuer's JWKS URL, or a file.

Both hand `TokenVerifier` a key for a token's ``kid``. `RemoteKeys` fetches the key set
at start, again in the background once it is ``refresh`` seconds old, and at once when a
token names a key it does not know (rotation), but never more often than every
``min_refresh`` seconds, so tokens with made-up key ids cannot make the gateway hammer
the issuer. A fetch that fails, hangs or returns garbage keeps the keys it had.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from .reloading import ReloadingFile

log = logging.getLogger(__name__)

MAX_KEY_SET_BYTES = 1_048_576
"""A key set larger than this is refused (a real one is a few kilobytes)."""

Key = Any
"""What `jwt.decode` verifies with: a `jwt.PyJWK` or a cryptography public key."""


class UnknownKeyError(Exception):
    """No key for the token's ``kid``, even after looking again."""


class KeySource(Protocol):
    """Keys by id for `TokenVerifier`."""

    async def start(self) -> None:
        """Load the keys once before the first request."""

    async def key(self, kid: str | None) -> Key:
        """The key ``kid`` names.

        Raises:
            UnknownKeyError: none, after at most one (rate-limited) reload.
        """


def parse_key_set(document: bytes) -> dict[str | None, jwt.PyJWK]:
    """Signing keys of a JWKS document by ``kid``; a lone key also answers to ``None``.

    Raises:
        ValueError: not JSON, not a key set, or no usable signing key.
    """
    try:
        keys = jwt.PyJWKSet.from_dict(orjson.loads(document)).keys
    except (orjson.JSONDecodeError, jwt.PyJWKSetError, jwt.PyJWKError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a usable JSON Web Key Set: {exc}") from None
    signing = {key.key_id: key for key in keys if key.public_key_use in (None, "sig")}
    if not signing:
        raise ValueError("the key set has no signing key")
    if len(signing) == 1:
        signing[None] = next(iter(signing.values()))
    return signing


class RemoteKeys:
    """The issuer's key set at ``url``, cached and refreshed as the module docstring says."""

    def __init__(
        self,
        url: str,
        *,
        refresh: float,
        min_refresh: float,
        timeout: float,
        on_fetch: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._refresh = refresh
        self._min_refresh = min_refresh
        self._timeout = timeout
        self._on_fetch = on_fetch
        """Told ``ok`` or ``error`` after each fetch (the metric)."""
        self._clock = clock
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._loaded_at = -float("inf")
        self._tried_at = -float("inf")
        self._fetching: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._fetch()

    async def key(self, kid: str | None) -> Key:
        now = self._clock()
        if now - self._loaded_at >= self._refresh and now - self._tried_at >= self._min_refresh:
            self._fetch()  # in the background; the current keys serve meanwhile
        found = self._keys.get(kid)
        if found is None and now - self._tried_at >= self._min_refresh:
            await asyncio.shield(self._fetch())
            found = self._keys.get(kid)
        if found is None:
            raise UnknownKeyError(f"no signing key with id {kid!r}")
        return found

    def _fetch(self) -> asyncio.Task[None]:
        """The fetch under way, or a new one: one at a time, whoever asks."""
        if self._fetching is None or self._fetching.done():
            self._tried_at = self._clock()
            self._fetching = asyncio.get_running_loop().create_task(self._load(), name="rpcgw-jwks")
        return self._fetching

    async def _load(self) -> None:
        try:
            document = await asyncio.wait_for(
                asyncio.to_thread(_download, self._url, self._timeout), self._timeout
            )
            self._keys = parse_key_set(document)
        except (OSError, ValueError, TimeoutError) as exc:
            self._on_fetch("error")
            log.warning(
                "could not fetch the token signing keys; keeping the ones held",
                extra={"url": self._url, "cause": str(exc) or type(exc).__name__, "keys": len(self._keys)},
            )
            return
        self._loaded_at = self._clock()
        self._on_fetch("ok")
        log.info("token signing keys fetched", extra={"url": self._url, "keys": len(self._keys)})


def _pem_key(content: bytes) -> jwt.PyJWK:
    """A PEM public key as a JWK, so it verifies only with its own algorithm (RS256, ES256, EdDSA)."""
    return jwt.PyJWK.from_json(public_jwk(serialization.load_pem_public_key(content)))


def public_jwk(public_key: Any) -> str:
    """A public key (RSA, EC, Ed25519 or Ed448) as a JWK document.

    Raises:
        ValueError: another kind of key, which cannot verify tokens.
    """
    if isinstance(public_key, rsa.RSAPublicKey):
        return jwt.algorithms.RSAAlgorithm.to_jwk(public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return jwt.algorithms.ECAlgorithm.to_jwk(public_key)
    if isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
        return jwt.algorithms.OKPAlgorithm.to_jwk(public_key)
    raise ValueError(f"a {type(public_key).__name__} cannot verify tokens")


def _download(url: str, timeout: float) -> bytes:
    # Runs in a worker thread; `RemoteKeys` stops waiting after ``timeout`` whatever happens here.
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the operator's URL)
        document: bytes = response.read(MAX_KEY_SET_BYTES + 1)
    if len(document) > MAX_KEY_SET_BYTES:
        raise ValueError(f"the key set is larger than {MAX_KEY_SET_BYTES} bytes")
    return document


class FileKeys:
    """A PEM public key (any ``kid``) or a JWKS document in a file, re-read when it changes."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._path = path
        self._file = ReloadingFile(path, _file_keys, "token signing keys", clock)

    async def start(self) -> None:
        self._file.load()  # a missing or broken file stops the gateway at start

    async def key(self, kid: str | None) -> Key:
        pem, keys = self._file.current()
        found = pem if pem is not None else keys.get(kid)
        if found is None:
            raise UnknownKeyError(f"no signing key with id {kid!r} in {self._path}")
        return found


def _file_keys(content: bytes) -> tuple[jwt.PyJWK | None, dict[str | None, jwt.PyJWK]]:
    """A key file's content: (its PEM key, which answers to any ``kid``) or (None, its JWKS keys).

    Raises:
        ValueError: neither.
    """
    if content.lstrip().startswith(b"-----BEGIN"):
        return _pem_key(content), {}
    return None, parse_key_set(content)

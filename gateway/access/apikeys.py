"""`ApiKeys`: callers proving who they are with a key in ``X-API-Key``.

The gateway holds only SHA-256 digests of the keys, in a JSON file (typically a mounted
Secret), so the file reveals no key. It is re-read when it changes, so keys are added,
rotated and revoked without a restart:

    {"keys": [{"subject": "billing", "sha256": "<hex digest>", "scopes": ["orders:read"]}]}

Keys are random 256-bit strings, so one unsalted hash suffices: there is nothing to guess.
``python -m gateway.access.apikeys --subject billing --scope orders:read`` makes a key and
prints it with the entry for the file.
"""

from __future__ import annotations

import argparse
import hashlib
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import orjson

from kafkarpc.protocol import Identity

from .reloading import ReloadingFile

HEADER = "x-api-key"
"""The request header that carries a key."""
PREFIX = "rpcgw_"
"""Every key starts with this, so a leaked one is recognisable (secret scanners)."""
MAX_KEY_BYTES = 256


def digest(key: str) -> str:
    """The hex SHA-256 of a key, as the file stores it."""
    return hashlib.sha256(key.encode()).hexdigest()


def parse(document: bytes) -> dict[str, Identity]:
    """Identities by key digest.

    Raises:
        ValueError: not the documented shape.
    """
    try:
        entries = orjson.loads(document)["keys"]
        found: dict[str, Identity] = {}
        for entry in entries:
            sha256, subject, scopes = entry["sha256"].lower(), entry["subject"], entry.get("scopes", [])
            if (
                len(sha256) != 64
                or not isinstance(subject, str)
                or not all(isinstance(s, str) for s in scopes)
            ):
                raise ValueError(f"bad entry for subject {subject!r}")
            found[sha256] = Identity(subject, tuple(scopes))
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f'expected {{"keys": [{{"subject", "sha256", "scopes"}}]}}: {exc!r}') from None
    return found


class ApiKeys:
    """The keys in ``path``; construct once, `start` before use."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self._file = ReloadingFile(path, parse, "API keys", clock)

    def start(self) -> None:
        """Read the file; a missing or malformed one stops the gateway at start."""
        self._file.load()

    def identify(self, key: str) -> Identity | None:
        """Who holds ``key``; None for an unknown or revoked one."""
        identities = self._file.current()
        if len(key) > MAX_KEY_BYTES:
            return None
        # A dictionary lookup by digest: timing reveals at most something about the digest,
        # which does not help find a key.
        return identities.get(digest(key))


def main() -> None:
    """Make a new key: print it once, and the entry to add to the keys file."""
    parser = argparse.ArgumentParser(prog="python -m gateway.access.apikeys", description=main.__doc__)
    parser.add_argument("--subject", required=True, help="who the key identifies")
    parser.add_argument("--scope", action="append", default=[], help="a scope the key grants (repeatable)")
    arguments = parser.parse_args()
    key = PREFIX + secrets.token_urlsafe(32)
    entry = {"subject": arguments.subject, "sha256": digest(key), "scopes": arguments.scope}
    print(f"key (give it to the caller; it is not stored): {key}")
    print(f"entry for the keys file: {orjson.dumps(entry).decode()}")


if __name__ == "__main__":
    main()

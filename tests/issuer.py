"""`Issuer`: a token issuer for tests, with RSA, EC and Ed25519 keys and a real JWKS endpoint.

It signs tokens with PyJWT, like an identity provider would, and serves its key set over
HTTP on loopback (`serving`), where a test can also make it hang or answer garbage.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives import serialization

from bench.tokens import private_key
from gateway.access.keys import public_jwk

ISSUER = "https://issuer.test"
AUDIENCE = "kafka-rpc-gateway"
ALGORITHM_OF = {"rsa": "RS256", "ec": "ES256", "ed25519": "EdDSA"}


class Issuer:
    """Keys by id; `token` signs, `key_set` is the published JWKS document."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, Any]] = {}
        """kid → (algorithm, private key) of the published keys."""
        self.mode = "serve"
        """What the JWKS endpoint does: ``serve``, ``garbage`` or ``hang``."""
        self.fetches = 0
        self._release = threading.Event()

    def add_key(self, kid: str, kind: str = "rsa") -> str:
        """Create and publish a key; returns its kid."""
        self.keys[kid] = (ALGORITHM_OF[kind], private_key(ALGORITHM_OF[kind]))
        return kid

    def public_pem(self, kid: str) -> bytes:
        pem: bytes = (
            self.keys[kid][1]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        return pem

    def key_set(self) -> bytes:
        keys = []
        for kid, (algorithm, private) in self.keys.items():
            jwk = orjson.loads(public_jwk(private.public_key()))
            keys.append({**jwk, "kid": kid, "alg": algorithm, "use": "sig"})
        return orjson.dumps({"keys": keys})

    def token(
        self,
        kid: str,
        *,
        subject: str = "alice",
        scope: str = "rpc",
        lifetime: float = 300,
        now: float | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with key ``kid``: iss, aud, sub, scope, iat, exp, plus ``claims``."""
        issued = time.time() if now is None else now
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "scope": scope,
            "iat": int(issued),
            "exp": int(issued + lifetime),
            **claims,
        }
        algorithm, private = self.keys[kid]
        return jwt.encode(payload, private, algorithm=algorithm, headers={"kid": kid, **(headers or {})})

    @contextlib.contextmanager
    def serving(self) -> Iterator[str]:
        """The key set at an http://127.0.0.1 URL until the block ends."""
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.fetches += 1
                if issuer.mode == "hang":
                    issuer._release.wait()  # answers only when the test ends
                    return
                body = b"<html>not a key set" if issuer.mode == "garbage" else issuer.key_set()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
        finally:
            self._release.set()
            server.shutdown()
            server.server_close()

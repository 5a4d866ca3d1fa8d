"""Bearer tokens for benchmarks: ``python -m bench --jwt``, and ``python -m bench.tokens``.

`jwt_options` makes a signing key, points the gateway at its public half
(``GATEWAY_AUTH=jwt``, a key file, a policy letting every caller call every method) and
returns the ``Authorization`` header every benchmark request then carries: one caller
reusing one token, as clients do for its lifetime.

``python -m bench.tokens`` measures what verification costs per request, per algorithm,
for a token seen for the first time and for one verified before (the gateway remembers
verified tokens until they expire), and what the whole admission costs on the event loop
with a remembered token: the `Gatekeeper` (header, token, policy), the fair share, and
encoding ``rpc-caller``.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from prometheus_client import CollectorRegistry

from gateway.access import AccessSettings, Resource, build
from gateway.access.keys import FileKeys
from gateway.access.tokens import TokenVerifier

ISSUER = "https://bench.invalid"
AUDIENCE = "kafka-rpc-gateway"
ALGORITHMS = {"RS256": "rsa", "ES256": "ec", "EdDSA": "ed25519"}


def private_key(algorithm: str) -> Any:
    """A new signing key for ``algorithm`` (RS256: RSA 2048, ES256: P-256, EdDSA: Ed25519)."""
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def _key_file(directory: Path, signing_key: Any) -> Path:
    path = directory / "issuer.pem"
    path.write_bytes(
        signing_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _token(signing_key: Any, algorithm: str, subject: str = "bench") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": subject, "scope": "rpc", "iat": now, "exp": now + 3600}
    return jwt.encode(claims, signing_key, algorithm=algorithm)


def jwt_options(directory: Path, algorithm: str = "RS256") -> tuple[dict[str, str], dict[str, str]]:
    """(gateway environment, request headers) for a benchmark with bearer tokens on."""
    signing_key = private_key(algorithm)
    environment = {
        "GATEWAY_AUTH": "jwt",
        "GATEWAY_AUTH_JWT_KEY_FILE": str(_key_file(directory, signing_key)),
        "GATEWAY_AUTH_ISSUER": ISSUER,
        "GATEWAY_AUTH_AUDIENCE": AUDIENCE,
        "GATEWAY_AUTH_ALGORITHMS": f'["{algorithm}"]',
        "GATEWAY_AUTH_POLICY": '{"methods": {"*": []}}',
    }
    return environment, {"authorization": f"Bearer {_token(signing_key, algorithm)}"}


async def _cost(algorithm: str, rounds: int) -> tuple[float, float]:
    """Median microseconds to verify a new token, and a token verified before."""
    signing_key = private_key(algorithm)
    with tempfile.TemporaryDirectory() as directory:
        keys = FileKeys(_key_file(Path(directory), signing_key))
        await keys.start()
        verifier = TokenVerifier(
            keys,
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=[algorithm],
            clock_skew=30,
            scopes_claim="scope",
            forward_claims=[],
        )
        tokens = [_token(signing_key, algorithm, f"caller-{n}") for n in range(rounds)]
        first, again = [], []
        for token in tokens:
            started = time.perf_counter()
            await verifier.verify(token)
            first.append(time.perf_counter() - started)
            started = time.perf_counter()
            await verifier.verify(token)
            again.append(time.perf_counter() - started)
    return statistics.median(first) * 1e6, statistics.median(again) * 1e6


async def _admission(rounds: int, requests: int) -> float:
    """Median microseconds per request of admitting a caller whose token was verified before."""
    signing_key = private_key("RS256")
    with tempfile.TemporaryDirectory() as directory:
        settings = AccessSettings(
            mode="jwt",
            jwt_key_file=_key_file(Path(directory), signing_key),
            issuer=ISSUER,
            audience=AUDIENCE,
            algorithms=["RS256"],
            policy={"methods": {"*": []}},
        )
        built = build(settings, CollectorRegistry(), max_pending=10_000, retry_after=1)
        assert built is not None
        gatekeeper, share = built
        await gatekeeper.start()
        headers = [
            (b"host", b"gateway:8080"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {_token(signing_key, 'RS256')}".encode()),
            (b"content-length", b"256"),
        ]
        resource = Resource("methods", "echo")
        medians = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                identity = await gatekeeper.admit({"headers": headers}, resource)
                with share.held(identity.subject):
                    identity.encode()
            medians.append((time.perf_counter() - started) / requests)
    return statistics.median(medians) * 1e6


def main() -> None:
    """Print the verification cost table and the admission cost."""
    print("| algorithm | new token (µs, median) | token seen before (µs, median) |")
    print("|---|---|---|")
    for algorithm in ALGORITHMS:
        first, again = asyncio.run(_cost(algorithm, 2_000))
        print(f"| {algorithm} | {first:.1f} | {again:.2f} |")
    admission = asyncio.run(_admission(rounds=7, requests=20_000))
    print(f"\nadmission, token verified before (policy, fair share, rpc-caller): {admission:.1f} µs/request")


if __name__ == "__main__":
    main()

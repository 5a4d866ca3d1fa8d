"""Access control: authentication (bearer JWTs, API keys), the policy, the fair share.

`build` makes the parts `GatewaySettings`-style settings (`AccessSettings`) ask for;
docs/SECURITY.md says how to turn each on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import orjson
from prometheus_client import Counter

from .apikeys import ApiKeys
from .fairshare import FairShare
from .gatekeeper import IDENTITY, Gatekeeper
from .keys import FileKeys, KeySource, RemoteKeys
from .policy import Policy, Resource
from .settings import AccessSettings
from .tokens import TokenVerifier

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "IDENTITY",
    "AccessControl",
    "AccessSettings",
    "FairShare",
    "Gatekeeper",
    "Policy",
    "Resource",
    "build",
]


class AccessControl(NamedTuple):
    """What `build` makes: who is admitted, and how much each may hold."""

    gatekeeper: Gatekeeper
    share: FairShare


def build(
    settings: AccessSettings, registry: CollectorRegistry, *, max_pending: int, retry_after: int
) -> AccessControl | None:
    """The gatekeeper and the fair share ``settings`` ask for; None with ``GATEWAY_AUTH=none``.

    Raises:
        ValueError: the policy is not valid JSON or not a valid policy.
    """
    if not settings.schemes:
        return None
    tokens = None
    if "jwt" in settings.schemes:
        assert settings.issuer is not None  # AccessSettings checks what jwt needs is set
        assert settings.audience is not None
        tokens = TokenVerifier(
            _keys(settings, registry),
            issuer=settings.issuer,
            audience=settings.audience,
            algorithms=settings.algorithms,
            clock_skew=settings.clock_skew,
            scopes_claim=settings.scopes_claim,
            forward_claims=settings.forward_claims,
        )
    api_keys = None
    if "apikey" in settings.schemes:
        assert settings.api_keys_file is not None
        api_keys = ApiKeys(settings.api_keys_file)
    gatekeeper = Gatekeeper(
        policy=Policy(_policy_document(settings)), registry=registry, tokens=tokens, api_keys=api_keys
    )
    share = settings.max_pending_per_caller or max(1, max_pending // 4)
    return AccessControl(gatekeeper, FairShare(share, retry_after))


def _keys(settings: AccessSettings, registry: CollectorRegistry) -> KeySource:
    """The token signing keys: the issuer's JWKS URL (fetches counted), or a key file."""
    if settings.jwks_url is None:
        assert settings.jwt_key_file is not None  # AccessSettings checks one of them is set
        return FileKeys(settings.jwt_key_file)
    fetches = Counter(
        "rpcgw_jwks_fetches", "Fetches of the token signing keys by outcome.", ["outcome"], registry=registry
    )
    return RemoteKeys(
        settings.jwks_url,
        refresh=settings.jwks_refresh,
        min_refresh=settings.jwks_min_refresh,
        timeout=settings.jwks_timeout,
        on_fetch=lambda outcome: fetches.labels(outcome).inc(),
    )


def _policy_document(settings: AccessSettings) -> dict[str, object]:
    if settings.policy is not None:
        return settings.policy
    if settings.policy_file is None:
        return {}
    document = orjson.loads(settings.policy_file.read_bytes())
    if not isinstance(document, dict):
        raise ValueError(f"{settings.policy_file}: the policy must be a JSON object")
    return document

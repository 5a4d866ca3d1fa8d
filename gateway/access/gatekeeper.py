"""`Gatekeeper`: who is calling (authentication) and whether they may (authorisation).

`gateway.app.GatewayAPI` asks it about every request to a method, route, publish or stream
topic before anything else runs. A missing or bad credential is 401 with ``WWW-Authenticate``
(RFC 6750), a caller without the scope the `Policy` asks for is 403; each decision is counted
by outcome in ``rpcgw_auth_decisions_total`` and each refusal logged with its reason, never
with the credential. The admitted caller's `Identity` rides in the ASGI scope (`IDENTITY`)
to the endpoint, which sends it to the worker in ``rpc-caller``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter

from ..errors import ForbiddenError, UnauthenticatedError
from . import apikeys
from .policy import Resource
from .tokens import TokenRefused

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from starlette.types import Scope

    from kafkarpc.protocol import Identity

    from .apikeys import ApiKeys
    from .policy import Policy
    from .tokens import TokenVerifier

log = logging.getLogger(__name__)

IDENTITY = "rpcgw.identity"
"""ASGI scope key of the admitted caller's `Identity`."""
REALM = "kafka-rpc-gateway"
_AUTHORIZATION = b"authorization"
_API_KEY = apikeys.HEADER.encode()
# error_description values (RFC 6750 §3: no quotes or backslashes), by refusal reason.
_DESCRIPTIONS = {
    "expired": "the token has expired",
    "not_yet_valid": "the token is not valid yet",
    "wrong_audience": "the token is for another audience",
    "wrong_issuer": "the token is from another issuer",
    "unknown_key": "the token is signed with an unknown key",
    "bad_signature": "the token signature does not verify",
    "bad_algorithm": "the token algorithm is not accepted",
    "too_large": "the token is too large",
    "missing_claim": "the token lacks a required claim",
}


_RESULTS = Resource("results", "/results/")
"""What a result lookup is called in logs of a refused credential."""


class Gatekeeper:
    """Admits or refuses callers; one per app."""

    def __init__(
        self,
        *,
        policy: Policy,
        registry: CollectorRegistry,
        tokens: TokenVerifier | None = None,
        api_keys: ApiKeys | None = None,
    ) -> None:
        self._policy = policy
        self._tokens = tokens
        self._api_keys = api_keys
        self.decisions = Counter(
            "rpcgw_auth_decisions",
            "Access decisions by outcome: allowed, forbidden, or why the credential was refused.",
            ["outcome"],
            registry=registry,
        )
        self._allowed = self.decisions.labels("allowed")

    def security_schemes(self) -> dict[str, dict[str, str]]:
        """OpenAPI security schemes of the enabled credentials (any one of them is accepted)."""
        schemes: dict[str, dict[str, str]] = {}
        if self._tokens is not None:
            schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
        if self._api_keys is not None:
            schemes["apiKey"] = {"type": "apiKey", "in": "header", "name": apikeys.HEADER}
        return schemes

    async def start(self) -> None:
        """Read the keys; raises when a key file is missing or malformed."""
        if self._tokens is not None:
            await self._tokens.start()
        if self._api_keys is not None:
            self._api_keys.start()
        if self._policy.empty:
            log.warning("the access policy has no rules: every request to a method or topic is refused (403)")

    async def admit(self, scope: Scope, resource: Resource) -> Identity:
        """The caller's identity, if it may have ``resource``; it is also put in the scope.

        Raises:
            UnauthenticatedError: no credential, or a refused one (401).
            ForbiddenError: a valid caller the policy does not grant ``resource`` (403).
        """
        identity = await self._authenticate(scope, resource)
        if not self._policy.allows(identity.scopes, resource):
            self.decisions.labels("forbidden").inc()
            required = self._policy.required(resource)
            log.info(
                "access refused",
                extra={"reason": "forbidden", "resource": str(resource), "subject": identity.subject},
            )
            detail = f"{resource} is not granted to any caller"
            if required:
                detail = f"{resource} needs one of the scopes: {', '.join(sorted(required))}"
            raise ForbiddenError(detail)
        self._allowed.inc()
        scope[IDENTITY] = identity
        return identity

    async def identify(self, scope: Scope) -> Identity:
        """The caller's identity, put in the scope, with no policy check: for a result location,
        which its endpoint checks against the caller who made the request.

        Raises:
            UnauthenticatedError: no credential, or a refused one (401).
        """
        identity = await self._authenticate(scope, _RESULTS)
        self._allowed.inc()
        scope[IDENTITY] = identity
        return identity

    async def _authenticate(self, scope: Scope, resource: Resource) -> Identity:
        bearer = api_key = None
        for name, value in scope["headers"]:
            if name == _AUTHORIZATION:
                bearer = value
            elif name == _API_KEY:
                api_key = value
        if bearer is not None and self._tokens is not None:
            kind, _, token = bearer.decode("latin-1").partition(" ")
            if kind.lower() != "bearer" or not token.strip():
                raise self._refused(
                    "malformed", "the Authorization header is not 'Bearer <token>'", resource, token=True
                )
            try:
                return await self._tokens.verify(token.strip())
            except TokenRefused as refused:
                raise self._refused(refused.reason, refused.detail, resource, token=True) from None
        if api_key is not None and self._api_keys is not None:
            identity = self._api_keys.identify(api_key.decode("latin-1"))
            if identity is None:
                raise self._refused(
                    "unknown_api_key", "the API key is not valid (unknown or revoked)", resource
                )
            return identity
        raise self._refused("missing", "this request needs a credential", resource)

    def _refused(
        self, reason: str, detail: str, resource: Resource, *, token: bool = False
    ) -> UnauthenticatedError:
        """Count and log a 401; ``token``: a bearer token was sent and refused (RFC 6750 §3.1)."""
        self.decisions.labels(reason).inc()
        log.info("access refused", extra={"reason": reason, "resource": str(resource)})
        description = _DESCRIPTIONS.get(reason, "the credential is not valid") if token else None
        return UnauthenticatedError(detail, reason=reason, challenge=self._challenge(description))

    def _challenge(self, refused_token: str | None) -> str:
        """``WWW-Authenticate``: one challenge per enabled scheme, the bearer one saying why a
        token was refused."""
        challenges = []
        if self._tokens is not None:
            bearer = f'Bearer realm="{REALM}"'
            if refused_token is not None:
                bearer += f', error="invalid_token", error_description="{refused_token}"'
            challenges.append(bearer)
        if self._api_keys is not None:
            challenges.append(f'ApiKey realm="{REALM}", header="{apikeys.HEADER}"')
        return ", ".join(challenges)

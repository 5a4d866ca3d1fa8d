"""Access settings, read from ``GATEWAY_AUTH`` and ``GATEWAY_AUTH_*``: who may call what."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SCHEMES = ("jwt", "apikey")
"""The ways a caller can prove who it is; ``GATEWAY_AUTH`` names one or both, or ``none``."""
# Asymmetric only: with a shared-secret algorithm allowed, a token "signed" with the public
# key as an HMAC secret would verify (RFC 8725 §2.1, §3.1).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class AccessSettings(BaseSettings):
    """Authentication, authorisation and the per-caller fair share."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_AUTH_", extra="ignore", populate_by_name=True)

    mode: str | None = Field(default=None, validation_alias=AliasChoices("GATEWAY_AUTH", "mode"))
    """``GATEWAY_AUTH``: ``jwt``, ``apikey``, ``jwt,apikey`` or ``none``. Required: the gateway does
    not start until it is set, and ``none`` is logged as a warning."""
    jwks_url: str | None = None
    """Where the issuer publishes its signing keys (JWKS), e.g. ``https://idp/.well-known/jwks.json``."""
    jwt_key_file: Path | None = None
    """Instead of a JWKS URL: a PEM public key or a JWKS JSON file (re-read when it changes)."""
    issuer: str | None = None
    """Required ``iss`` of bearer tokens."""
    audience: str | None = None
    """Required ``aud`` of bearer tokens (this gateway's identifier at the issuer)."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "EdDSA"])
    """Signature algorithms accepted (JSON list); asymmetric ones only."""
    clock_skew: float = Field(default=30.0, ge=0)
    """Seconds of clock difference tolerated when checking ``exp`` and ``nbf``."""
    jwks_refresh: float = Field(default=300.0, gt=0)
    """Seconds the key set is used before it is fetched again (in the background)."""
    jwks_min_refresh: float = Field(default=30.0, ge=0)
    """Least seconds between fetches caused by tokens with an unknown key id."""
    jwks_timeout: float = Field(default=3.0, gt=0)
    """Seconds one key-set fetch may take."""
    scopes_claim: str = "scope"
    """Claim holding the caller's scopes or roles: a space-separated string or a list."""
    forward_claims: list[str] = Field(default_factory=list)
    """Token claims passed to workers in ``rpc-caller`` besides the subject and scopes (JSON list)."""
    api_keys_file: Path | None = None
    """API keys: a JSON file of hashed keys (``python -m gateway.access.apikeys``), re-read on change."""
    policy: dict[str, Any] | None = None
    """The access policy as a JSON object (see docs/SECURITY.md); wins over ``policy_file``."""
    policy_file: Path | None = None
    """The access policy in a JSON file."""
    max_pending_per_caller: int | None = Field(default=None, gt=0)
    """Requests one caller may have awaiting replies; unset: a quarter of ``GATEWAY_MAX_PENDING``."""

    @field_validator("mode")
    @classmethod
    def _mode(cls, mode: str | None) -> str | None:
        if mode is None:
            return None
        chosen = [part.strip().lower() for part in mode.split(",") if part.strip()]
        if chosen == ["none"]:
            return "none"
        unknown = [part for part in chosen if part not in SCHEMES]
        if not chosen or unknown:
            raise ValueError(f"GATEWAY_AUTH must be jwt, apikey, jwt,apikey or none, not {mode!r}")
        return ",".join(sorted(set(chosen)))

    @field_validator("algorithms")
    @classmethod
    def _asymmetric(cls, algorithms: list[str]) -> list[str]:
        refused = [name for name in algorithms if name not in ALGORITHMS]
        if refused or not algorithms:
            raise ValueError(
                f"only asymmetric algorithms can be accepted ({', '.join(ALGORITHMS)}): {refused}"
            )
        return algorithms

    @model_validator(mode="after")
    def _complete(self) -> AccessSettings:
        if "jwt" in self.schemes:
            if (self.jwks_url is None) == (self.jwt_key_file is None):
                raise ValueError("GATEWAY_AUTH=jwt needs exactly one of GATEWAY_AUTH_JWKS_URL, _JWT_KEY_FILE")
            if not self.issuer or not self.audience:
                raise ValueError("GATEWAY_AUTH=jwt needs GATEWAY_AUTH_ISSUER and GATEWAY_AUTH_AUDIENCE")
        if "apikey" in self.schemes and self.api_keys_file is None:
            raise ValueError("GATEWAY_AUTH=apikey needs GATEWAY_AUTH_API_KEYS_FILE")
        return self

    @property
    def schemes(self) -> tuple[str, ...]:
        """The enabled schemes; empty with ``none`` (or unset)."""
        if self.mode is None or self.mode == "none":
            return ()
        return tuple(self.mode.split(","))

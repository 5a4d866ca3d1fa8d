"""`Response`: a handler's explicit answer, when the return value alone does not say enough."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Response:
    """A handler's explicit answer."""

    body: bytes = b""
    """Reply value."""
    status: int = 200
    """HTTP status; use `HandlerError` for errors so the body is problem+json."""
    content_type: str = "application/json"
    """Media type of ``body``."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers for the caller (``location``, ``etag``...); the gateway passes the allowed ones."""

"""The method catalog: what each worker process serves, as records on a compacted topic.

A worker publishes one record per process at start, again on every heartbeat, and a
tombstone (null value) when it stops; gateways read the topic from the beginning and keep
the entries whose heartbeat is recent. docs/PROTOCOL.md documents the same format for
workers in other languages.

    key     "<group>/<instance>", UTF-8
    value   {"version": 1, "group": ..., "instance": ..., "heartbeat": <epoch ms>,
             "methods": [<method>, ...]}                    or null: withdrawn
    method  {"method": "orders.create", "routes": ["POST /orders"],
             "summary": ..., "description": ...,
             "request": {"content_type": ..., "body": <JSON Schema>|null,
                         "path": <JSON Schema>|null, "query": <JSON Schema>|null},
             "response": {"content_type": ..., "status": 201, "body": <JSON Schema>|null,
                          "stream": false},
             "cancel": true,
             "digest": <sha256 hex of the method without its digest>}

``response.stream`` says the reply comes in parts (``rpc-sequence``); ``cancel`` says the worker
reads cancel records, so the gateway sends them. Both are false when absent (older workers).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import routes
from .errors import ProtocolError
from .protocol import valid_method

VERSION = 1
MAX_RECORD_BYTES = 1_048_576
"""A larger catalog record is refused (a runaway or hostile schema)."""
MAX_METHODS = 1_000
MAX_ROUTES = 16
MAX_TEXT = 4_096
"""Longest summary or description, in characters."""
MAX_SCHEMA_DEPTH = 64
"""Deepest nesting of objects and lists in a schema (readers walk schemas recursively)."""

Schema = dict[str, Any] | bool | None
"""A JSON Schema (an object or a boolean), or None where there is nothing to describe."""


@dataclass(frozen=True, slots=True)
class Method:
    """One method a worker group serves."""

    method: str
    routes: tuple[str, ...] = ()
    """``VERB /template`` strings (`kafkarpc.routes`)."""
    summary: str = ""
    description: str = ""
    request_content_type: str = "application/json"
    body: Schema = None
    """Schema of the request body; None for a raw (untyped) body."""
    path: Schema = None
    """Schema of the path parameters, an object schema."""
    query: Schema = None
    """Schema of the query parameters, an object schema."""
    response_content_type: str = "application/json"
    status: int = 200
    """Status of a successful reply."""
    output: Schema = None
    """Schema of the successful reply's body (of each part, when streamed); None for a raw body."""
    streaming: bool = False
    """Whether the reply comes in parts (a streamed reply)."""
    cancellable: bool = False
    """Whether the worker reads cancel records for this method."""

    def document(self) -> dict[str, Any]:
        """The method's JSON document, with its digest."""
        document: dict[str, Any] = {
            "method": self.method,
            "routes": list(self.routes),
            "summary": self.summary,
            "description": self.description,
            "request": {
                "content_type": self.request_content_type,
                "body": self.body,
                "path": self.path,
                "query": self.query,
            },
            "response": {
                "content_type": self.response_content_type,
                "status": self.status,
                "body": self.output,
                "stream": self.streaming,
            },
            "cancel": self.cancellable,
        }
        document["digest"] = _digest(document)
        return document

    @property
    def digest(self) -> str:
        """sha256 of the method's document: changes whenever anything a caller sees changes."""
        return str(self.document()["digest"])

    @classmethod
    def from_document(cls, document: Any) -> Method:
        """Decode and check one method document.

        Raises:
            ProtocolError: it does not follow the format, or a route is invalid.
        """
        if not isinstance(document, dict):
            raise ProtocolError("a method is not a JSON object")
        method = document.get("method")
        if not isinstance(method, str) or not valid_method(method):
            raise ProtocolError(f"method {method!r} is not a valid method name")
        found = document.get("routes", [])
        if (
            not isinstance(found, list)
            or len(found) > MAX_ROUTES
            or not all(isinstance(r, str) for r in found)
        ):
            raise ProtocolError(f"{method}: routes must be a list of at most {MAX_ROUTES} strings")
        for route in found:
            routes.parse(route)
        request, response = document.get("request") or {}, document.get("response") or {}
        if not isinstance(request, dict) or not isinstance(response, dict):
            raise ProtocolError(f"{method}: request and response must be objects")
        status = response.get("status", 200)
        if not isinstance(status, int) or not 200 <= status <= 299:
            raise ProtocolError(f"{method}: the success status must be 200-299")
        return cls(
            method=method,
            routes=tuple(found),
            summary=_text(document.get("summary"), method),
            description=_text(document.get("description"), method),
            request_content_type=_text(request.get("content_type"), method) or "application/json",
            body=_schema(request.get("body"), method),
            path=_schema(request.get("path"), method),
            query=_schema(request.get("query"), method),
            response_content_type=_text(response.get("content_type"), method) or "application/json",
            status=status,
            output=_schema(response.get("body"), method),
            streaming=response.get("stream") is True,
            cancellable=document.get("cancel") is True,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """What one worker process serves, as of its last heartbeat."""

    group: str
    instance: str
    heartbeat_ms: int
    """When it was published, epoch milliseconds."""
    methods: tuple[Method, ...] = field(default_factory=tuple)

    @property
    def key(self) -> bytes:
        """The record key: one per worker process, so a restart overwrites its own entry."""
        return f"{self.group}/{self.instance}".encode()

    def value(self) -> bytes:
        """The record value."""
        return orjson.dumps(
            {
                "version": VERSION,
                "group": self.group,
                "instance": self.instance,
                "heartbeat": self.heartbeat_ms,
                "methods": [method.document() for method in self.methods],
            }
        )

    @classmethod
    def from_record(cls, value: bytes) -> Entry:
        """Decode and check a catalog record's value (a tombstone's is None: not decoded here).

        Raises:
            ProtocolError: too large, not JSON, or not the format.
        """
        if len(value) > MAX_RECORD_BYTES:
            raise ProtocolError(f"catalog record of {len(value)} bytes, limit {MAX_RECORD_BYTES}")
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ProtocolError("catalog record is not JSON") from None
        if not isinstance(document, dict) or document.get("version") != VERSION:
            raise ProtocolError(f"catalog record is not a version {VERSION} object")
        group, instance, heartbeat = (
            document.get("group"),
            document.get("instance"),
            document.get("heartbeat"),
        )
        if not isinstance(group, str) or not isinstance(instance, str) or not isinstance(heartbeat, int):
            raise ProtocolError("catalog record lacks group, instance or heartbeat")
        found = document.get("methods")
        if not isinstance(found, list) or len(found) > MAX_METHODS:
            raise ProtocolError(f"catalog record methods must be a list of at most {MAX_METHODS}")
        return cls(group, instance, heartbeat, tuple(Method.from_document(method) for method in found))


def _digest(document: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _text(value: Any, method: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ProtocolError(f"{method}: texts must be strings of at most {MAX_TEXT} characters")
    return value


def _schema(value: Any, method: str) -> Schema:
    if value is None or isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise ProtocolError(f"{method}: a schema must be a JSON object, a boolean or null")
    level: list[Any] = [value]
    for _ in range(MAX_SCHEMA_DEPTH):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return value
    raise ProtocolError(f"{method}: a schema is nested deeper than {MAX_SCHEMA_DEPTH} levels")

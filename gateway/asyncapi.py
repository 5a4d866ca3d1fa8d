"""The AsyncAPI 3.0 document: the request, reply and catalog topics, their headers and payloads.

Generated from the same catalog as the OpenAPI document: one request message and one reply
message per method, each with the method's schema, and the header schemas of docs/PROTOCOL.md,
so a team can see (or generate code for) what travels on Kafka behind the HTTP API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kafkarpc import protocol

from .openapi import PROBLEM, SchemaHoist, component_name

if TYPE_CHECKING:
    from kafkarpc.catalog import Method

_TEXT = {"type": "string"}
_DIGITS = {"type": "string", "pattern": "^[0-9]+$"}
# Headers requests and replies both carry.
_BOTH = {
    protocol.CORRELATION_ID: {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    protocol.CONTENT_TYPE: _TEXT,
    protocol.TRACEPARENT: _TEXT,
    protocol.TRACESTATE: _TEXT,
    protocol.TIMING: _TEXT,
}
REQUEST_HEADERS = {
    "type": "object",
    "properties": {
        **_BOTH,
        protocol.REPLY_TO: _TEXT,
        protocol.REPLY_PARTITION: _DIGITS,
        protocol.METHOD: {"type": "string", "pattern": f"^{protocol.METHOD_PATTERN.pattern}$"},
        protocol.DEADLINE: {**_DIGITS, "description": "Unix epoch milliseconds"},
        protocol.ROUTE: _TEXT,
        protocol.PATH_PARAMS: {**_TEXT, "description": "a JSON object of strings"},
        protocol.QUERY: _TEXT,
    },
    "required": [
        protocol.CORRELATION_ID,
        protocol.REPLY_TO,
        protocol.METHOD,
        protocol.DEADLINE,
        protocol.CONTENT_TYPE,
    ],
}
REPLY_HEADERS = {
    "type": "object",
    "properties": {
        **_BOTH,
        protocol.STATUS: _DIGITS,
        protocol.RESPONSE_HEADERS: {**_TEXT, "description": "a JSON object of strings"},
    },
    "required": [protocol.CORRELATION_ID, protocol.STATUS, protocol.CONTENT_TYPE],
}
CATALOG_ENTRY = {
    "type": "object",
    "description": "What one worker process serves (docs/PROTOCOL.md); a null value withdraws it.",
    "properties": {
        "version": {"const": 1},
        "group": _TEXT,
        "instance": _TEXT,
        "heartbeat": {"type": "integer", "description": "Unix epoch milliseconds"},
        "methods": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["version", "group", "instance", "heartbeat", "methods"],
}


def document(
    *, version: str, request_topic: str, reply_topic: str, catalog_topic: str, methods: list[Method]
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for these topics and methods."""
    schemas: dict[str, Any] = {"Problem": PROBLEM, "CatalogEntry": CATALOG_ENTRY}
    messages: dict[str, Any] = {
        "problem": {
            "name": "problem",
            "summary": "An error reply: rpc-status >= 400 and an RFC 9457 problem document",
            "contentType": protocol.PROBLEM_JSON,
            "headers": REPLY_HEADERS,
            "payload": {"$ref": "#/components/schemas/Problem"},
        },
        "catalogEntry": {
            "name": "catalogEntry",
            "summary": "One worker process's methods; key <group>/<instance>",
            "contentType": "application/json",
            "payload": {"$ref": "#/components/schemas/CatalogEntry"},
        },
    }
    requests: dict[str, Any] = {}
    replies: dict[str, Any] = {"problem": {"$ref": "#/components/messages/problem"}}
    operations: dict[str, Any] = {}
    for method in sorted(methods, key=lambda m: m.method):
        name = component_name(method.method)
        hoist = SchemaHoist(schemas, name)
        messages[f"{name}.request"] = {
            "name": f"{method.method} request",
            "summary": method.summary or method.method,
            "contentType": method.request_content_type,
            "headers": REQUEST_HEADERS,
            "payload": hoist(method.body) or {},
        }
        messages[f"{name}.reply"] = {
            "name": f"{method.method} reply",
            "contentType": method.response_content_type,
            "headers": REPLY_HEADERS,
            "payload": hoist(method.output) or {},
        }
        requests[name] = {"$ref": f"#/components/messages/{name}.request"}
        replies[name] = {"$ref": f"#/components/messages/{name}.reply"}
        operations[name] = {
            "action": "send",
            "summary": method.summary or method.method,
            "channel": {"$ref": "#/channels/requests"},
            "messages": [{"$ref": f"#/channels/requests/messages/{name}"}],
            "reply": {
                "channel": {"$ref": "#/channels/replies"},
                "messages": [
                    {"$ref": f"#/channels/replies/messages/{name}"},
                    {"$ref": "#/channels/replies/messages/problem"},
                ],
            },
        }
    operations["announce"] = {
        "action": "send",
        "summary": "A worker announces its methods (at start, on every heartbeat) or withdraws them",
        "channel": {"$ref": "#/channels/catalog"},
        "messages": [{"$ref": "#/channels/catalog/messages/entry"}],
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Kafka RPC Gateway",
            "version": version,
            "description": "The requests the gateway produces, the replies workers produce, and the catalog.",
        },
        "defaultContentType": "application/json",
        "channels": {
            "requests": {"address": request_topic, "messages": requests},
            "replies": {"address": reply_topic, "messages": replies},
            "catalog": {
                "address": catalog_topic,
                "messages": {"entry": {"$ref": "#/components/messages/catalogEntry"}},
            },
        },
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }

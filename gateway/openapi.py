"""The OpenAPI 3.1 document: FastAPI's own routes, the bare endpoints, and every catalog method.

Each method the catalog lists gets ``POST /rpc/{name}`` and an operation per route, with its
body, path and query parameters and result as the worker described them, and the problem
responses the gateway can answer. Worker schemas may hold ``$defs`` (pydantic's), whose
``#/$defs/...`` references mean nothing at the root of an OpenAPI document: they are moved
to ``components/schemas`` under a per-method prefix and the references rewritten.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from kafkarpc import routes
from kafkarpc.protocol import PROBLEM_JSON

if TYPE_CHECKING:
    from kafkarpc.catalog import Method, Schema

PROBLEM = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "correlation_id": {"type": "string"},
    },
    "required": ["type", "title", "status", "detail"],
}
VALIDATION_PROBLEM = {
    "allOf": [
        {"$ref": "#/components/schemas/Problem"},
        {
            "type": "object",
            "properties": {
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                            "msg": {"type": "string"},
                            "type": {"type": "string"},
                        },
                    },
                }
            },
        },
    ]
}
_PROBLEMS = {
    "404": "No worker serves the method",
    "413": "The body is larger than the gateway takes",
    "429": "Too many requests pending (Retry-After)",
    "502": "The worker failed",
    "503": "The gateway or Kafka is unavailable (Retry-After)",
    "504": "No reply by the deadline",
}
_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def component_name(text: str) -> str:
    """``text`` as a component name (``[A-Za-z0-9_.-]``, as OpenAPI and AsyncAPI require)."""
    return _NAME.sub("_", text)


def document(base: dict[str, Any], methods: list[Method]) -> dict[str, Any]:
    """``base`` (FastAPI's document with the bare endpoints) plus an operation per method and route."""
    doc = copy.deepcopy(base)
    paths: dict[str, Any] = doc.setdefault("paths", {})
    schemas: dict[str, Any] = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM
    schemas["ValidationProblem"] = VALIDATION_PROBLEM
    for method in sorted(methods, key=lambda m: m.method):
        hoist = SchemaHoist(schemas, component_name(method.method))
        item = paths.setdefault(f"/rpc/{method.method}", {})
        item["post"] = _operation(method, hoist, f"rpc_{method.method}", route=None)
        for text in method.routes:
            route = routes.parse(text)
            paths.setdefault(route.template, {})[route.verb.lower()] = _operation(
                method, hoist, f"{route.verb.lower()}_{method.method}", route
            )
    return doc


def _operation(
    method: Method, hoist: SchemaHoist, operation_id: str, route: routes.Route | None
) -> dict[str, Any]:
    parameters = []
    path_schema = _object(hoist(method.path))
    query_schema = _object(hoist(method.query))
    if route is not None:
        for name in route.parameters:
            schema = path_schema["properties"].get(name, {"type": "string"})
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    else:  # through /rpc/, a path parameter may come from the query string
        query_schema = {
            "properties": {**path_schema["properties"], **query_schema["properties"]},
            "required": [*path_schema["required"], *query_schema["required"]],
        }
    for name, schema in query_schema["properties"].items():
        required = name in query_schema["required"]
        parameters.append({"name": name, "in": "query", "required": required, "schema": schema})
    operation: dict[str, Any] = {
        "operationId": component_name(operation_id),
        "summary": method.summary or method.method,
        "tags": [method.method.split(".")[0]],
        "parameters": parameters,
        "responses": {
            str(method.status): _streamed(hoist(method.output))
            if method.streaming
            else _content(method.response_content_type, hoist(method.output), "The worker's reply"),
            "202": _ACCEPTED,
            "400": _problem("The request is malformed"),
            "422": {
                "description": "The input does not validate: pydantic's errors with their locations",
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}},
            },
            **{status: _problem(text) for status, text in _PROBLEMS.items()},
        },
    }
    if method.description:
        operation["description"] = method.description
    if route is None or route.verb != "GET":
        body = hoist(method.body)
        operation["requestBody"] = {
            "required": body is not None,
            **_content(method.request_content_type, body, "The request body"),
        }
    return operation


def _content(content_type: str, schema: Schema, description: str) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": {} if schema is None else schema}
    examples = schema.get("examples") if isinstance(schema, dict) else None
    if isinstance(examples, list) and examples:
        media["example"] = examples[0]
    return {"description": description, "content": {content_type or "*/*": media}}


def _streamed(schema: Schema) -> dict[str, Any]:
    """A streamed reply: each part matches ``schema``, one NDJSON line or one SSE event each."""
    return {
        "description": (
            "The worker's reply in parts, as they come: one JSON document per line, or with "
            "`Accept: text/event-stream` one event per part (`id:` its number), then `end` or `error`"
        ),
        "content": {
            "application/x-ndjson": {"schema": {} if schema is None else schema},
            "text/event-stream": {"schema": {"type": "string"}},
        },
    }


_ACCEPTED: dict[str, Any] = {
    "description": (
        "With `Prefer: respond-async`: the request is in Kafka; GET the `Location` for its result"
    ),
    "headers": {"Location": {"schema": {"type": "string"}, "description": "/results/{token}"}},
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _object(schema: Schema) -> dict[str, Any]:
    """An object schema's properties and required names (empty for None or a non-object)."""
    if not isinstance(schema, dict):
        return {"properties": {}, "required": []}
    properties = schema.get("properties")
    required = schema.get("required")
    return {
        "properties": properties if isinstance(properties, dict) else {},
        "required": required if isinstance(required, list) else [],
    }


class SchemaHoist:
    """Moves a schema's ``$defs`` into ``components/schemas`` and rewrites its references."""

    def __init__(self, components: dict[str, Any], prefix: str) -> None:
        self._components = components
        self._prefix = prefix

    def __call__(self, schema: Schema) -> Schema:
        if not isinstance(schema, dict):
            return schema
        schema = copy.deepcopy(schema)
        definitions = schema.pop("$defs", {})
        if isinstance(definitions, dict):
            for name, definition in definitions.items():
                self._components[f"{self._prefix}.{component_name(name)}"] = self._rewrite(definition)
        result = self._rewrite(schema)
        assert isinstance(result, dict)
        return result

    def _rewrite(self, node: Any) -> Any:
        if isinstance(node, dict):
            return {
                key: (
                    f"#/components/schemas/{self._prefix}.{component_name(value.removeprefix('#/$defs/'))}"
                    if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                    else self._rewrite(value)
                )
                for key, value in node.items()
            }
        if isinstance(node, list):
            return [self._rewrite(item) for item in node]
        return node

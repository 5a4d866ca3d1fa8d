"""Structural JSON schemas (draft-07) for the custom resources the chart renders.

kubernetes-validate knows only built-in kinds; these cover the fields this chart uses of the
prometheus-operator (monitoring.coreos.com/v1) and KEDA (keda.sh/v1alpha1) CRDs, closed with
``additionalProperties: false`` so a misspelt field fails as it would on the API server.
"""

from __future__ import annotations

from typing import Any

STRING: dict[str, Any] = {"type": "string", "minLength": 1}
DURATION: dict[str, Any] = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def closed(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


METADATA = {
    "type": "object",
    "required": ["name", "labels"],
    "properties": {"name": STRING, "namespace": STRING, "labels": LABELS, "annotations": LABELS},
}
SELECTOR = closed({"matchLabels": LABELS}, ["matchLabels"])
NAMESPACES = closed({"matchNames": {"type": "array", "items": STRING, "minItems": 1}}, ["matchNames"])
ENDPOINT = closed({"port": STRING, "path": STRING, "interval": DURATION, "scrapeTimeout": DURATION}, ["port"])


def resource(api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        **closed(
            {
                "apiVersion": {"const": api_version},
                "kind": {"const": kind},
                "metadata": METADATA,
                "spec": spec,
            },
            ["apiVersion", "kind", "metadata", "spec"],
        ),
    }


RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["expr"],
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
    "properties": {
        "alert": STRING,
        "record": STRING,
        "expr": STRING,
        "for": DURATION,
        "labels": LABELS,
        "annotations": LABELS,
    },
}
SCHEMAS: dict[str, dict[str, Any]] = {
    "ServiceMonitor": resource(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        closed(
            {
                "namespaceSelector": NAMESPACES,
                "selector": SELECTOR,
                "endpoints": {"type": "array", "items": ENDPOINT},
            },
            ["selector", "endpoints"],
        ),
    ),
    "PodMonitor": resource(
        "monitoring.coreos.com/v1",
        "PodMonitor",
        closed(
            {
                "namespaceSelector": NAMESPACES,
                "selector": SELECTOR,
                "podMetricsEndpoints": {"type": "array", "items": ENDPOINT},
            },
            ["selector", "podMetricsEndpoints"],
        ),
    ),
    "PrometheusRule": resource(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        closed(
            {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {"name": STRING, "rules": {"type": "array", "items": RULE}}, ["name", "rules"]
                    ),
                }
            },
            ["groups"],
        ),
    ),
    "ScaledObject": resource(
        "keda.sh/v1alpha1",
        "ScaledObject",
        closed(
            {
                "scaleTargetRef": closed({"apiVersion": STRING, "kind": STRING, "name": STRING}, ["name"]),
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {
                            "type": {"const": "kafka"},
                            # KEDA trigger metadata values are strings.
                            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
                            "authenticationRef": closed({"name": STRING}, ["name"]),
                        },
                        ["type", "metadata"],
                    ),
                },
            },
            ["scaleTargetRef", "triggers"],
        ),
    ),
    "TriggerAuthentication": resource(
        "keda.sh/v1alpha1",
        "TriggerAuthentication",
        closed(
            {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": closed(
                        {"parameter": STRING, "name": STRING, "key": STRING}, ["parameter", "name", "key"]
                    ),
                }
            },
            ["secretTargetRef"],
        ),
    ),
}

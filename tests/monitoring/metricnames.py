"""Which series the code exposes, and which series a PromQL expression reads.

The exposed names come from the registries the gateway and the worker build
(`GatewayMetrics`, `ConnectionMetrics`, `WorkerMetrics`), never from a list kept by hand, so
a metric renamed in the code fails every dashboard panel and alert that still reads the old
name. Families are typed: a counter ``x`` is exposed as ``x_total``, a histogram as
``x_bucket``, ``x_sum`` and ``x_count``, an info as ``x_info``.
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from gateway.metrics import ConnectionMetrics, GatewayMetrics
from workers.metrics import WorkerMetrics

SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "unknown": ("",),
}
"""Sample names of a metric family of each type, after the family's name (OpenMetrics)."""

PROMETHEUS_SERIES = frozenset({"up"})
"""Series Prometheus itself writes for every scrape target, which rules may read too."""


def exposed(registry: CollectorRegistry) -> set[str]:
    """Every sample name ``registry`` can expose, whether or not a labelled child exists yet."""
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


def gateway_registry() -> CollectorRegistry:
    """The registry one gateway serves on /metrics: its metrics and its HTTP connections'."""
    metrics = GatewayMetrics(max_timeout=30.0, methods_limit=100)
    ConnectionMetrics().join(metrics.registry)
    return metrics.registry


def exported_names() -> set[str]:
    """Every series name the gateway and the worker expose."""
    return exposed(gateway_registry()) | exposed(WorkerMetrics().registry)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
# An identifier not glued to a preceding word, number, ``$`` (a Grafana variable) or ``.``,
# with the ``(`` that makes it a function call, if any.
_IDENTIFIER = re.compile(r"(?<![\w$:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk"}
    | {"quantile", "limitk", "limit_ratio", "inf", "nan", "Inf", "NaN", "atan2"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects.

    A lexical reading, enough for expressions `promtool` has parsed: strings, label
    matchers, ranges and grouping clauses are removed first, then what is left that is
    neither a keyword nor called like a function is a metric name.
    """
    text = _STRINGS.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    return {
        match.group(1)
        for match in _IDENTIFIER.finditer(text)
        if match.group(2) is None and match.group(1) not in _KEYWORDS
    }

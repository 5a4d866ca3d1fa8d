"""`LabelledSeries`: a labelled Prometheus metric's series, each looked up once.

prometheus-client's ``labels()`` checks the values and takes the metric's lock on every call,
about 2 µs (several times that on a busy host). On a path taken for every request a dict
lookup finds the same child. Only for label values from a bounded set (methods, outcomes):
each distinct tuple is kept for the life of the process, as prometheus-client keeps its series.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)


class LabelledSeries(Generic[M]):
    """``series(*values)`` is ``metric.labels(*values)``, looked up once per distinct values."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child

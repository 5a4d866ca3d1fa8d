"""`LabelledSeries`: a labelled metric's children, looked up once."""

from __future__ import annotations

from unittest.mock import call, patch

from prometheus_client import CollectorRegistry, Counter, Histogram

from kafkarpc.series import LabelledSeries


def test_each_label_tuple_is_the_metrics_own_child_looked_up_once() -> None:
    registry = CollectorRegistry()
    counter = Counter("calls", "Calls.", ["method", "outcome"], registry=registry)
    series = LabelledSeries(counter)

    with patch.object(counter, "labels", wraps=counter.labels) as labels:
        series("echo", "ok").inc()
        series("echo", "ok").inc()
        series("echo", "timeout").inc()

    assert labels.call_args_list == [call("echo", "ok"), call("echo", "timeout")]
    assert series("echo", "ok") is counter.labels("echo", "ok")
    assert registry.get_sample_value("calls_total", {"method": "echo", "outcome": "ok"}) == 2
    assert registry.get_sample_value("calls_total", {"method": "echo", "outcome": "timeout"}) == 1


def test_a_histograms_children_observe_into_the_registry() -> None:
    registry = CollectorRegistry()
    durations = LabelledSeries(Histogram("took_seconds", "Took.", ["method"], registry=registry))

    durations("echo").observe(0.002)
    durations("echo").observe(0.004)

    assert registry.get_sample_value("took_seconds_count", {"method": "echo"}) == 2
    assert registry.get_sample_value("took_seconds_sum", {"method": "echo"}) == 0.006

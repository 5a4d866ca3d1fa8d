"""The timeline plot and its per-second buckets, on hand-made figures (no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from chaos.report import Figures
from chaos.timeline import per_second, plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _timeline() -> list[tuple[float, float, int]]:
    """Four seconds from t = 1000: 100 quick 2xx, then errors, then one slow 2xx crossing a second."""
    calls = [(1000 + k / 256, (k + 1) / 1000, 200) for k in range(100)]  # 1..100 ms, all in second 0
    calls += [
        (1001.25, 0.5, 504),  # done 1001.75
        (1001.5, 0.25, 429),  # done 1001.75
        (1001.75, 0.0, 0),  # connection error, done at once
        (1002.5, 1.0, 200),  # sent in second 2, done in second 3
        (1002.25, 0.125, 500),
        (1002.75, 0.125, 503),  # done 1002.875
    ]
    return calls[::-1]  # out of send order, as calls that finish late are recorded


def _figures(timeline: list[tuple[float, float, int]], windows: list[tuple[str, float, float]]) -> Figures:
    figures = Figures("broker-restart", "SIGKILL the single broker at 20 %, restart after 5 s")
    figures.timeline = timeline
    figures.windows = windows
    return figures


def test_rates_count_calls_by_completion_second_and_outcome() -> None:
    seconds = per_second(_timeline())

    assert seconds.origin == 1000.0
    assert seconds.completed == {
        "2xx": [100, 0, 0, 1],
        "504": [0, 1, 0, 0],
        "503/429": [0, 1, 1, 0],
        "other errors": [0, 1, 1, 0],
    }


def test_latency_percentiles_are_per_send_second_and_skip_seconds_without_2xx() -> None:
    seconds = per_second(_timeline())

    # Nearest rank over 1..100 ms: the 50th and the 99th value; one call is its own p50 and p99.
    assert seconds.p50_ms == [pytest.approx(50.0), None, pytest.approx(1000.0), None]
    assert seconds.p99_ms == [pytest.approx(99.0), None, pytest.approx(1000.0), None]


def test_a_single_call_makes_one_second() -> None:
    seconds = per_second([(7.5, 0.25, 200)])

    assert seconds.completed["2xx"] == [1]
    assert seconds.p99_ms == [pytest.approx(250.0)]


def test_the_plot_is_a_png_matplotlib_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "broker-restart.png"

    plot(_figures(_timeline(), [("broker down", 1001.0, 1002.5)]), path)

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (700, 1200)
    assert pixels.min() < pixels.max()  # something drawn, not a blank canvas
    assert plt.get_fignums() == []  # closed: a run plots one figure per scenario


def test_a_timeline_without_any_2xx_still_plots(tmp_path: Path) -> None:
    path = tmp_path / "overload.png"

    plot(_figures([(5.0, 0.001, 503), (6.5, 2.0, 504), (6.75, 0.0, 0)], []), path)

    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_windows_outside_the_calls_neither_crash_nor_stretch_the_axis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept: list[Figure] = []
    windows = [
        ("partition", 900.0, 950.0),  # before the first call
        ("broker down", 1001.0, 1001.5),
        ("broker down", 1002.0, 1002.5),  # the same fault again: one legend entry
        ("slow disk", 1003.5, 2000.0),  # runs past the last call
        ("late", 3000.0, 3001.0),  # after the last call
    ]

    with monkeypatch.context() as patch:
        patch.setattr(plt, "close", kept.append)  # keep the figure open to look at its axes
        plot(_figures(_timeline(), windows), tmp_path / "t.png")

    [figure] = kept
    rate, latency = figure.axes
    assert rate.get_xlim() == (0.0, 4.0)
    assert latency.get_xlim() == (0.0, 4.0)
    for axes in (rate, latency):
        faults = [label for label in axes.get_legend_handles_labels()[1] if label.startswith("fault")]
        assert faults == [
            "fault: partition (outside the calls)",
            "fault: broker down",
            "fault: slow disk",
            "fault: late (outside the calls)",
        ]
    plt.close(figure)
    assert (tmp_path / "t.png").read_bytes()[:8] == PNG_SIGNATURE


def test_json_figures_keep_the_windows_and_leave_out_the_timeline() -> None:
    # Imported here: chaos.__main__ pulls in every scenario, which the plot tests do not need.
    from chaos.__main__ import _document

    figures = _figures(_timeline(), [("broker down", 1001.0, 1002.5)])

    document = _document(figures)

    assert "timeline" not in document
    assert document["windows"] == [("broker down", 1001.0, 1002.5)]
    assert len(figures.timeline) == 106  # the run's own figures keep it
    assert json.loads(json.dumps(document, default=str))["name"] == "broker-restart"

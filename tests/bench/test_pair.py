"""`bench.pair`: two arms' rounds side by side, with per-round differences and medians."""

from __future__ import annotations

from bench.pair import Round, table
from tests.bench.smoke import run_module


def _rows(text: str) -> dict[str, list[str]]:
    return {
        line.split(" | ")[0].lstrip("| "): line.rstrip(" |").split(" | ")[1:]
        for line in text.splitlines()[2:]
    }


def test_each_round_pairs_a_and_b_and_the_medians_are_of_the_differences() -> None:
    rounds = [
        Round(0, "A", 1.0, 2.0, 100.0, 0),
        Round(0, "B", 1.2, 2.5, 90.0, 1),
        Round(1, "B", 1.1, 3.0, 95.0, 0),  # B first in odd rounds
        Round(1, "A", 1.4, 2.0, 105.0, 0),
        Round(2, "A", 1.0, 2.0, 100.0, 0),
        Round(2, "B", 0.9, 2.0, 80.0, 0),
    ]
    rows = _rows(table(rounds))
    assert rows["0"] == [
        "1.000",
        "1.200",
        "0.200",
        "2.000",
        "2.500",
        "0.500",
        "100.0",
        "90.0",
        "-10.0",
        "0 / 1",
    ]
    assert rows["1"][:3] == ["1.400", "1.100", "-0.300"]
    # Medians of the differences (0.2, -0.3, -0.1), not the difference of the medians (0.1).
    assert rows["median"][2] == "-0.100"
    assert rows["median"][8] == "-10.0"
    assert rows["median"][9] == "0 / 1 (sum)"


def test_a_round_missing_an_arm_is_left_out() -> None:
    rows = _rows(
        table(
            [
                Round(0, "A", 1.0, 2.0, 100.0, 0),
                Round(0, "B", 1.0, 2.0, 100.0, 0),
                Round(1, "A", 9.0, 9.0, 9.0, 0),
            ]
        )
    )
    assert set(rows) == {"0", "median"}
    assert rows["median"][2] == "0.000"


def test_a_worker_of_its_own_serves_arm_b_on_a_real_stack() -> None:
    """``--worker-env``: arm B's gateway reaches only its own worker, whose CPU is measured."""
    stdout = run_module(
        "bench.pair",
        *("--worker-env", "WORKER_CONCURRENCY=16"),
        *("--rounds", "2", "--seconds", "1", "--warmup", "1", "--rate", "50"),
        timeout=240,
    )
    summary, _, text = stdout.partition("\nB: worker WORKER_CONCURRENCY=16;")
    assert "CPU: the worker's" in text
    rows = _rows(text.split("\n", 1)[1])
    assert set(rows) == {"0", "1", "median"}
    for number in ("0", "1"):
        assert rows[number][9] == "0 / 0", summary
        # Both workers did the work.
        assert float(rows[number][6]) > 0
        assert float(rows[number][7]) > 0

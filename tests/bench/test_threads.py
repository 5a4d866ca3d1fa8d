"""`bench.threads --floor`: S's processes and the Kafka floor's, thread by thread, at one rate."""

from __future__ import annotations

from tests.bench.smoke import run_module


def _sections(stdout: str) -> dict[str, tuple[str, dict[str, list[str]]]]:
    """Each step by target (``S``, ``FK``): its header line, and its rows by process or process/thread."""
    sections: dict[str, tuple[str, dict[str, list[str]]]] = {}
    for block in stdout.strip().split("\n\n"):
        header, *lines = block.splitlines()
        rows: dict[str, list[str]] = {}
        for line in lines:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if cells[0] == "process" or cells[0].startswith("---"):
                continue
            key = cells[0] if len(cells) == 4 else f"{cells[0]}/{cells[1]}"
            rows[key] = cells[-3:]  # CPU-µs, switches, run-queue wait µs
        sections[header.split()[0]] = header, rows
    return sections


def test_both_sides_are_measured_at_the_same_rate_on_a_real_stack() -> None:
    stdout = run_module(
        "bench.threads",
        *("--rate", "100", "--seconds", "2", "--warmup", "1", "--settle", "1", "--floor"),
        *("--worker-env", "WORKER_CONCURRENCY=16"),
        timeout=240,
    )
    sections = _sections(stdout)
    assert set(sections) == {"S", "FK"}, stdout
    (s_header, s), (fk_header, fk) = sections["S"], sections["FK"]
    assert s_header.startswith("S open 100/s:")
    assert fk_header.startswith("FK open 100/s:")
    # Each side's own processes did the work of its requests, and their threads are listed.
    for process in ("gateway", "worker", "broker", "client"):
        assert float(s[process][0]) > 0, stdout
        assert float(s[process][2]) >= 0, stdout  # a run-queue wait was read for it
    for process in ("kafkafloor", "broker", "client"):
        assert float(fk[process][0]) > 0, stdout
        assert float(fk[process][2]) >= 0, stdout
    # A thread's CPU is counted in clock ticks (10 ms), too coarse for 200 requests: listed is enough.
    assert {"gateway/main", "worker/main", "kafkafloor/main"} <= set(s) | set(fk), stdout
    assert "gateway" not in fk  # the floor's step measures only its own path

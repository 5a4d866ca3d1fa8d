"""Writes a `bench.streams` run: ``<name>.json`` (everything) and ``<name>.md`` (the summary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


def write(document: dict[str, Any], directory: Path, name: str) -> list[Path]:
    """Write both files; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.json", directory / f"{name}.md"]
    paths[0].write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    paths[1].write_text(markdown(document))
    return paths


def _median_max(values: dict[str, float]) -> str:
    return f"{values.get('median', '-')} | {values.get('max', '-')}"


def markdown(document: dict[str, Any]) -> str:
    """The human summary of one run."""
    meta, setup, figures = document["meta"], document["setup"], document["figures"]
    machine, delivery, rss = meta["machine"], document["delivery"], figures["gateway_rss_mib"]
    n, r = setup["subscribers"], setup["records"]
    smoke = ", smoke run" if meta["smoke"] else ""
    lines = [
        f"# Streams: {n:,} SSE subscribers on one topic ({meta['started']}{smoke})",
        "",
        f"Commit `{meta['commit']}`, Kafka {meta['kafka']}, librdkafka {machine['librdkafka']}, "
        f"Python {machine['python']}, {machine['cores']} cores (shared), {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}; load average {meta['load_before']} before, {meta['load_after']} after.",
        "",
        f"ONE gateway (`python -m gateway`: uvloop, httptools, `GATEWAY_MAX_STREAMS={n}`, stream buffer "
        f"{setup['stream_buffer']}) streams a fresh topic of {setup['partitions']} partition(s) to {n:,} "
        f"subscribers held by ONE client process on loopback, connected {setup['connect_batch']} at a time. "
        f"{r} records follow {setup['warmup_records']} warm-up record (not in the figures): each is produced "
        f"once the one before reached every subscriber, then {setup['gap_seconds']} s later.",
        "",
        "## Delivery",
        "",
        f"Every subscriber received every record: **{'yes' if delivery['complete'] else 'NO'}**. "
        f"Missing {delivery['missing']}, duplicates {delivery['duplicates']}, subscribers out of order "
        f"{delivery['out_of_order_subscribers']}, overflowed {delivery['overflowed']}, ended early "
        f"{delivery['lost_early']}, records late {delivery['late_records']}, produce failures "
        f"{len(delivery['produce_failures'])}; the gateway counted {delivery['gauge_connected']:,} streams "
        f"open, and {delivery['gauge_after_disconnect']} after the subscribers hung up.",
        "",
        f"## Delay from produce to subscriber, ms, over the {r} records",
        "",
        "| | median | max |",
        "|---|---|---|",
        f"| first subscriber | {_median_max(figures['delay_first_ms'])} |",
        f"| median subscriber | {_median_max(figures['delay_median_subscriber_ms'])} |",
        f"| last subscriber | {_median_max(figures['delay_last_ms'])} |",
        f"| last minus first | {_median_max(figures['fan_out_ms'])} |",
        f"| last subscriber, records with no full GC in the gateway | "
        f"{_median_max(figures['delay_last_ms_without_full_gc'])} |",
        f"| last subscriber, records with a full GC in the gateway ({figures['records_with_full_gc']}) | "
        f"{_median_max(figures['delay_last_ms_with_full_gc'])} |",
        "",
        "A delay runs from the bench's `produce()` call (the record carries that instant of the host's "
        "monotonic clock) to the client's `data_received` with the bytes that complete the event. It "
        "includes the producer's linger (1 ms) and the broker's append (acks=all), the gateway consumer's "
        "fetch and hand-over to the event loop, the wake-up of every subscriber's response task, their "
        "writes (a connection's writes leave at the end of the loop pass, `gateway.transport`, so even "
        "the first subscriber waits for most of that pass), loopback TCP, and the client process's own time "
        f"to read {n:,} sockets on the other core (it shares the 2 cores with the gateway and the broker).",
        "",
        "A full GC is a generation-2 collection of the gateway's Python heap (its "
        "`python_gc_collections_total`, read between records): it walks every tracked object, those "
        "each open stream keeps alive included, with the event loop stopped, so the records whose "
        f"fan-out meets one are the slow ones. Full GCs: {_counts(figures['gateway_full_gcs'])}.",
        "",
        "## Gateway memory and CPU",
        "",
        "| RSS MiB idle | with the subscribers | after the records | after hang-up | KiB per subscriber |",
        "|---|---|---|---|---|",
        f"| {rss['idle']} | {rss['connected']} | {rss['after_records']} | {rss['after_disconnect']} "
        f"| {rss['per_subscriber_kib']} |",
        "",
        f"- Connect: {figures['connect_seconds']} s for {n:,} subscribers; gateway "
        f"{figures['gateway_cpu_us_per_connect']} CPU-µs per subscriber.",
        f"- Fan-out: gateway {figures['gateway_cpu_ms_per_record']} CPU-ms per record, "
        f"{figures['gateway_cpu_us_per_delivery']} CPU-µs per record per subscriber (the gaps between "
        f"records included); client {figures['client_cpu_ms_per_record']} CPU-ms per record, "
        + _client_verdict(figures),
        f"- Idle: gateway {figures['gateway_idle_cores']} cores with no subscriber, "
        f"{figures['gateway_held_cores']} with {n:,} idle ones. Client RSS {figures['client_rss_mib']} MiB.",
        "",
        "| phase | seconds | CPU seconds by process | gateway full GCs |",
        "|---|---|---|---|",
    ]
    for phase, window in document["phases"].items():
        cpu = ", ".join(f"{name} {value:g}" for name, value in window["cpu_seconds"].items())
        lines.append(f"| {phase} | {window['seconds']} | {cpu} | {window['gateway_full_gcs']} |")
    lines += [
        "",
        "## Each record",
        "",
        "| record | first ms | median ms | last ms | gateway full GCs |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {row['seq']} | {row.get('first_ms', '-')} | {row.get('median_ms', '-')} | "
        f"{row.get('last_ms', '-')} | {row['gateway_full_gcs']} |"
        for row in document["delays"]
    ]
    lines += [
        "",
        "Command: `python -m bench.streams` (`--help` for the options); every figure is in the JSON file.",
        "",
    ]
    return "\n".join(lines)


def _client_verdict(figures: dict[str, Any]) -> str:
    # Its share of the work decides whether the last subscriber's delay measures the gateway or the client.
    if figures["client_cpu_ms_per_record"] * 2 <= figures["gateway_cpu_ms_per_record"]:
        return "under half the gateway's: one client process keeps up."
    return "over half the gateway's: the client's own reading may be part of the last delay."


def _counts(by_phase: dict[str, int]) -> str:
    return ", ".join(f"{phase} {count}" for phase, count in by_phase.items())

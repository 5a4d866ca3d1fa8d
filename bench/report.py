"""Writes a run's figures: ``<name>.json``, a Markdown table ``<name>.md`` and ``<name>.png``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib as mpl
import orjson

mpl.use("Agg")  # no display: files only
import matplotlib.pyplot as plt

PERCENTILES = ("p50", "p90", "p99", "p99_9")


def write(document: dict[str, Any], directory: Path, name: str = "results") -> list[Path]:
    """Write the three files; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{name}.json", directory / f"{name}.md", directory / f"{name}.png"]
    paths[0].write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    paths[1].write_text(markdown(document, paths[2].name))
    plot(document, paths[2])
    return paths


def _cells(cpu: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:g}" for name, value in cpu.items())


def markdown(document: dict[str, Any], image: str) -> str:
    """The human summary: targets, baselines vs system, CPU, sweep, stages."""
    meta, figures = document["meta"], document["figures"]
    lines = [
        f"# Benchmark run {meta['started']} ({meta['profile']})",
        "",
        f"Commit `{meta['commit']}`, Kafka {meta['kafka']}, librdkafka {meta['librdkafka']}, "
        f"{figures['cores']} cores; load average {meta['load_before']} before, {meta['load_after']} after.",
        f"Gateway: loop {meta['options']['loop']}, http {meta['options']['http']}; "
        f"KAFKA_PROPERTIES `{meta['kafka_properties'] or '{}'}`; extra env {meta['options']['env']}.",
        "",
        "## Targets",
        "",
        "| target | rule | measured | limit | ratio | met |",
        "|---|---|---|---|---|---|",
    ]
    for row in document["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        columns = (row["target"], row["rule"], row["measured"], row["limit"], row["ratio"], met)
        lines.append("| " + " | ".join(str(column) for column in columns) + " |")
    lines += _floors_section(document)
    lines += ["", "## Floors, baselines and system (medians over rounds)", ""]
    lines += ["| | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | max rate /s | CPU-µs/req (closed loop) |"]
    lines += ["|---|---|---|---|---|---|---|---|"]
    names = {
        "FH": "FH HTTP floor (raw ASGI echo, uvicorn + httptools + uvloop)",
        "FK": "FK Kafka floor (two plain confluent-kafka processes), open loop",
        "B1": "B1 HTTP echo (the gateway's endpoint, no Kafka)",
        "B2": "B2 Kafka ping-pong (no HTTP), open loop",
        "B2_one": "B2 one in flight (paced; not used in targets)",
        "S": "S full system",
    }
    for target, title in names.items():
        if target not in figures["low"]:
            continue
        latency = figures["low"][target]
        cpu = figures["cpu_us_per_request"].get(target.split("_")[0], {}) if target != "B2_one" else {}
        cpu_text = ", ".join(f"{k} {v:g}" for k, v in cpu.items())
        cells = " | ".join(str(latency.get(p, "")) for p in (*PERCENTILES, "max"))
        max_rate = figures["max_rate"].get(target, "")
        lines.append(f"| {title} | {cells} | {max_rate} | {cpu_text} |")
    lines += [
        "",
        f"Low load: open loop at {document['profile']['low_rate']:g}/s, latency from the intended send time. "
        f"Max rate and CPU: closed loop ({document['profile']['closed_connections']} connections; "
        f"B2 and FK {document['profile']['pipeline_window']} in flight), latency there is not reported "
        f"(coordinated omission). CPU bound = {figures['cores']} cores / (B1 + B2 CPU per request) = "
        f"{figures['cpu_bound']}/s; sustained rate at p99 <= 25 ms: {figures['sustained_rate']}/s.",
        "",
        f"Unhealthy sweep rates below each round's sustained rate (noise): "
        f"{_unhealthy_below(document, 'S')}. "
        f"Idle CPU after warm-up (cores): {figures['idle_cores']}.",
        "",
        "## CPU-µs and context switches per request, by process (closed loop, medians)",
        "",
        f"| | {' | '.join(CPU_COLUMNS)} | switches/request |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *[_cpu_row(target, figures) for target in figures["cpu_us_per_request"]],
        "",
        "## S open-loop sweep",
        "",
        *_sweep_table(document["results"]["sweep"]),
        "",
        "## Kafka floor open-loop sweep",
        "",
        "Relative to its own closed-loop maximum, searched as S's sweep is; the client does not spin. "
        f"Highest healthy rate, median of the rounds: {figures.get('kafka_floor_sustained_rate')}/s; "
        f"unhealthy rates below each round's: {_unhealthy_below(document, 'FK')}.",
        "",
        *_sweep_table(document["results"].get("kafka_floor_sweep", [])),
    ]
    equal = figures.get("equal_rate")
    if equal:
        servers = equal["servers"]
        lines += [
            "",
            f"## Server-side CPU at S's sustained rate ({equal['rate']:g}/s, open loop, clients excluded)",
            "",
            "| | per process (CPU-µs/request) | total |",
            "|---|---|---|",
            f"| S | {_cells(servers['S'])} | {equal['system_total']} |",
            f"| B1 + B2 | {_cells(servers['B1'])}; {_cells(servers['B2'])} | {equal['baselines_total']} |",
            "",
            f"S / (B1 + B2) at equal rate: {equal['ratio']} (informational; the CPU bound uses the "
            "closed-loop figures)."
            + ("" if equal["baselines_kept_up"] else " A baseline fell behind or failed: no ratio."),
        ]
    lines += _side_by_side_section(document)
    stages = document["results"].get("stages", {})
    lines += [
        "",
        f"## Stage breakdown ({stages.get('requests', 0)} requests at the low-load rate, ms, "
        "from the gateway's Server-Timing)",
        "",
    ]
    lines += ["| segment | p50 | p90 | mean |", "|---|---|---|---|"]
    for segment, values in stages.items():
        if isinstance(values, dict) and "mean" in values:
            lines.append(f"| {segment} | {values['p50']} | {values['p90']} | {values['mean']} |")
    if "soak" in document["results"]:
        soak = document["results"]["soak"]
        lines += ["", f"## Soak: {soak['requests']} requests at {soak['rate']:g}/s", ""]
        lines.append(
            f"RSS growth after the first tenth: {soak['rss_growth']}; errors {soak['step']['errors']}, "
            f"timeouts {soak['step']['timeouts']}."
        )
    lines += ["", f"![latency percentiles vs offered rate]({image})", ""]
    return "\n".join(lines)


def _sweep_table(steps: list[dict[str, Any]]) -> list[str]:
    """One line per open-loop step, in run order; rounds counted from 1."""
    lines = [
        "| round | offered /s | achieved /s | p50 | p90 | p99 | p99.9 | max | errors | timeouts "
        "| CPU-µs/req | pending after | host steal (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        latency = step["latency_ms"]
        cells = " | ".join(str(latency.get(p, "")) for p in (*PERCENTILES, "max"))
        pending = "" if step["pending_after"] is None else step["pending_after"]
        lines.append(
            f"| {step['round'] + 1} | {step['offered_rate']:g} | {step['achieved_rate']:g} | {cells} | "
            f"{step['errors']} | {step['timeouts']} | {_cells(step['cpu_us_per_request'])} | {pending} "
            f"| {_cells(step['host_cores'])} |"
        )
    return lines


def _unhealthy_below(document: dict[str, Any], side: str) -> str:
    """Each round's unhealthy rates below its sustained rate (noise), reported, not hidden."""
    rounds = document["results"]["sustained_rounds"]
    return "; ".join(f"round {r['round'] + 1}: {r[f'{side}_unhealthy_below']}" for r in rounds) or "none"


def _floors_section(document: dict[str, Any]) -> list[str]:
    """The issue's three rows (HTTP floor, Kafka floor, S) at low load, and the targets' ratios."""
    figures = document["figures"]
    low = figures["low"]
    if "FH" not in low or "FK" not in low:
        return []
    rows = {row["key"]: row for row in document["targets"] if "key" in row}

    def verdict(row: dict[str, Any]) -> str:
        met = {True: "met", False: "**not met**", None: "no verdict"}[row["met"]]
        return f"{row['measured']} ({row['rule']}: {met})"

    sustained = rows["floors_sustained"]
    return [
        "",
        "## S against the floors (the same run, the same broker)",
        "",
        f"| open loop at {document['profile']['low_rate']:g}/s (medians over rounds) | p50 ms | p99 ms |",
        "|---|---|---|",
        *(
            f"| {title} | {low[target].get('p50')} | {low[target].get('p99')} |"
            for target, title in (
                ("FH", "HTTP floor: raw ASGI echo on uvicorn + httptools + uvloop; no Kafka, no FastAPI"),
                ("FK", "Kafka floor: request-reply between two plain confluent-kafka processes; no HTTP"),
                ("S", "S: the full system"),
            )
        ),
        f"| S / (HTTP floor + Kafka floor), median of the rounds' ratios "
        f"| {verdict(rows['floors_p50'])} | {verdict(rows['floors_p99'])} |",
        "",
        f"Sustained (highest open-loop rate with p99 <= {document['profile']['slo_p99_ms']:g} ms, "
        f"the rate achieved and no errors), medians over {_rounds(len(sustained['rounds']))}: Kafka floor "
        f"{sustained['kafka_floor']}/s, S {sustained['S']}/s; S / Kafka floor, median of the rounds' "
        f"ratios = {verdict(sustained)}. Rounds (S / Kafka floor): "
        + ", ".join(f"{r['S']} / {r['kafka_floor']} = {r['ratio']}" for r in sustained["rounds"])
        + ".",
        *_peak_sentence(rows.get("floors_peak")),
    ]


def _peak_sentence(row: dict[str, Any] | None) -> list[str]:
    """The sustained target read literally: each side's highest healthy step, past saturation too."""
    if row is None:
        return []
    rounds = ", ".join(f"{r['S']} / {r['kafka_floor']} = {r['ratio']}" for r in row["rounds"])
    return [
        "",
        "Peak (the highest healthy step anywhere, the planned rates above a saturated one "
        f"measured too; informational): Kafka floor {row['kafka_floor']}/s, S {row['S']}/s; "
        f"S / Kafka floor, median of the rounds' ratios = {row['measured']}. Rounds: {rounds}.",
    ]


def _side_by_side_section(document: dict[str, Any]) -> list[str]:
    """The baselines side by side: B1 and B2 at once, each open loop at the offered rate."""
    steps = document["results"].get("side_by_side_sweep", [])
    if not steps:
        return []
    figures = document["figures"]
    pair, bound = figures["side_by_side_sustained_rate"], figures["cpu_bound"]
    sustained = figures["sustained_rate"]
    lines = [
        "",
        "## The baselines side by side: B1 ∥ B2, open loop at the same rate",
        "",
        "| offered /s | achieved B1 / B2 /s | p99 B1 | p99 B2 | p99 sum | healthy "
        "| B1 CPU-µs/req | B2 CPU-µs/req (client: child process) | total CPU-µs/req |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for step in steps:
        b1, b2 = step["B1"], step["B2"]
        b1_cpu, b2_cpu = b1["cpu_us_per_request"], b2["cpu_us_per_request"]
        total = round(b1_cpu.get("total", 0) + b2_cpu.get("total", 0), 1)
        lines.append(
            f"| {step['rate']:g} | {b1['achieved_rate']:g} / {b2['achieved_rate']:g} "
            f"| {b1['latency_ms'].get('p99')} | {b2['latency_ms'].get('p99')} | {step['p99_sum_ms']} "
            f"| {'yes' if step['healthy'] else 'no'} | {_cells(b1_cpu)} | {_cells(b2_cpu)} | {total} |"
        )
    of_bound = f" = {pair / bound:.2f} of the CPU bound ({bound}/s)" if pair and bound else ""
    of_pair = f"; S's sustained rate is {sustained / pair:.2f} times it" if pair and sustained else ""
    lines += [
        "",
        "The work of S without the gateway joining it: the HTTP client and server (B1) and the "
        "Kafka client, worker and broker (B2) at once on the same cores, each open loop at the "
        "offered rate, the Kafka client in a process of its own. The CPU bound assumes these two "
        "costs add up; this measures what they sustain together. Healthy when both are (each p99 "
        f"<= {document['profile']['slo_p99_ms']:g} ms, rate achieved, no errors). Highest healthy "
        f"rate: {pair}/s{of_bound}{of_pair}. Not a strict ceiling for S: the gateway serves HTTP "
        "and Kafka in one process, which saves wake-ups the two baselines each pay. "
        f"Unhealthy rates below it: {document['results'].get('side_by_side_unhealthy_below_sustained', [])}.",
    ]
    return lines


def _rounds(count: int) -> str:
    return f"{count} round" if count == 1 else f"{count} rounds"


def _by_round(steps: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """A sweep's steps per round, each round's by offered rate."""
    rounds = sorted({step["round"] for step in steps})
    return [sorted((s for s in steps if s["round"] == n), key=lambda s: s["offered_rate"]) for n in rounds]


CPU_COLUMNS = ("client", "httpfloor", "kafkafloor", "echo", "gateway", "worker", "broker", "total")


def _cpu_row(target: str, figures: dict[str, Any]) -> str:
    cpu = figures["cpu_us_per_request"][target]
    switches = figures["switches_per_request"][target]
    cells = [str(cpu.get(name, "")) for name in CPU_COLUMNS]
    switch_text = ", ".join(f"{k} {v:g}" for k, v in switches.items())
    return f"| {target} | {' | '.join(cells)} | {switch_text} |"


def plot(document: dict[str, Any], path: Path) -> None:
    """Latency percentiles of S against offered rate, with the floors' sums, the baselines' and the SLO."""
    figure, axes = plt.subplots(figsize=(11, 5))
    for number, sweep in enumerate(_by_round(document["results"]["sweep"])):
        rates = [s["offered_rate"] for s in sweep]
        # Every percentile for the first round; the later rounds' p99 beside it, to show the spread.
        for name in PERCENTILES if number == 0 else ("p99",):
            label = f"S {name.replace('_', '.')}" + (f", round {number + 1}" if number else "")
            values = [s["latency_ms"].get(name) for s in sweep]
            axes.plot(rates, values, marker="o", label=label, alpha=1.0 if number == 0 else 0.5)
    pair = sorted(
        (s for s in document["results"].get("side_by_side_sweep", []) if s["p99_sum_ms"] is not None),
        key=lambda s: s["rate"],
    )
    if pair:
        axes.plot(
            [s["rate"] for s in pair],
            [s["p99_sum_ms"] for s in pair],
            marker="s",
            color="grey",
            label="B1 ∥ B2 p99 sum (baselines side by side)",
        )
    for number, floor in enumerate(_by_round(document["results"].get("kafka_floor_sweep", []))):
        axes.plot(
            [s["offered_rate"] for s in floor],
            [s["latency_ms"].get("p99") for s in floor],
            marker="^",
            color="green",
            alpha=1.0 if number == 0 else 0.5,
            label="Kafka floor p99" + (f", round {number + 1}" if number else ""),
        )
    low = document["figures"]["low"]
    for name, style in (("p50", ":"), ("p99", "--")):
        if "FH" in low and "FK" in low:
            base = low["FH"].get(name, 0) + low["FK"].get(name, 0)
            axes.axhline(base, linestyle=style, color="green", label=f"floors summed, {name} ({base:.2f} ms)")
        base = low["B1"].get(name, 0) + low["B2"].get(name, 0)
        axes.axhline(base, linestyle=style, color="grey", label=f"B1 + B2 {name} ({base:.2f} ms)")
    axes.axhline(document["profile"]["slo_p99_ms"], color="red", linewidth=0.8, label="SLO p99")
    bound = document["figures"].get("cpu_bound")
    if bound:
        axes.axvline(bound, color="black", linewidth=0.8, label=f"CPU bound {bound:.0f}/s")
    axes.set_yscale("log")
    axes.set_xlabel("offered rate (requests/s, open loop)")
    axes.set_ylabel("latency from intended send time (ms)")
    axes.set_title(f"Kafka RPC Gateway, {document['meta']['started']}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the curves
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""An experiment, kept in history: the stock worker's CPU per request against `bench.leanworker`'s.

Arm A is the stack's gateway and worker; arm B a second gateway whose requests go to a topic
of their own, served by the lean worker in ``MODE``. Both warm up, then rounds load A and B in
turn (the order alternating) open loop at ``RATE``, printing each worker's CPU and switches
per request and its threads'.

    python -m bench.leanbound RATE MODE    # MODE: produce, send or task
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .cpu import CpuMeter, thread_sample
from .loadgen import LoadGenerator, connections_for, new_loop
from .stack import REPO_ROOT, ServerOptions, Stack

ROUNDS, SECONDS, SETTLE = 4, 10.0, 15.0


def main() -> None:
    """Run the rounds and print one line per arm and round."""
    rate, mode = float(sys.argv[1]), sys.argv[2]
    with Stack(ServerOptions()) as stack, asyncio.Runner(loop_factory=new_loop) as runner:
        topic = f"bench-lean-{uuid.uuid4().hex[:8]}"
        stack.kafka.create_topics({topic: 1})
        ready = Path(tempfile.gettempdir()) / f"{topic}-ready"
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "KAFKA_BOOTSTRAP_SERVERS": stack.kafka.bootstrap_servers,
        }
        lean = subprocess.Popen([sys.executable, "-m", "bench.leanworker", topic, str(ready), mode], env=env)
        try:
            while not ready.exists():
                if lean.poll() is not None:
                    raise SystemExit("the lean worker exited")
                time.sleep(0.1)
            with stack.second_gateway({"GATEWAY_REQUEST_TOPIC": topic}) as (port, _):
                loads = {
                    "A": LoadGenerator("127.0.0.1", stack.gateway_port),
                    "B": LoadGenerator("127.0.0.1", port),
                }
                workers = {"A": stack.pids["worker"], "B": lean.pid}
                for load in loads.values():
                    runner.run(load.closed_loop(32, 8, 0))
                    runner.run(load.open_loop(rate, SETTLE, 0, connections_for(rate)))
                for number in range(ROUNDS):
                    for arm in "AB" if number % 2 == 0 else "BA":
                        pid, load = workers[arm], loads[arm]
                        meter = CpuMeter({"worker": pid})
                        before, threads_before, sent = meter.sample(), thread_sample(pid), load.exchanges
                        step = runner.run(load.open_loop(rate, SECONDS, 0, connections_for(rate)))
                        after, threads_after, served = (
                            meter.sample(),
                            thread_sample(pid),
                            load.exchanges - sent,
                        )
                        cpu = CpuMeter.per_request(before, after, served)["worker"]
                        switches = CpuMeter.switches_per_request(before, after, served)["worker"]
                        threads = CpuMeter.per_request(threads_before, threads_after, served)
                        threads.pop("total", None)
                        busy = " ".join(f"{name}={value:.0f}" for name, value in threads.items() if value > 5)
                        p50, p99, failed = (
                            step.latency_ms["p50"],
                            step.latency_ms["p99"],
                            step.errors + step.timeouts,
                        )
                        print(
                            f"round {number} {arm}: p50 {p50:.2f} p99 {p99:.2f} ms, failed {failed}, "
                            f"worker {cpu:.0f} µs ({switches:.1f} switches): {busy}",
                            flush=True,
                        )
        finally:
            lean.terminate()
            lean.wait()


if __name__ == "__main__":
    main()

"""EXPERIMENT (kept in history, reverted): the stock second gateway vs `bench.leangateway`, open loop at RATE, alternated; CPU-µs per request of each gateway and the worker."""
import asyncio, os, sys, statistics, time
from bench.stack import Stack, ServerOptions, SECOND_GATEWAY
from bench.loadgen import LoadGenerator, connections_for, new_loop
from bench.threads import CONNECTIONS
rate = float(sys.argv[1]); secs = float(sys.argv[2]); pairs = int(sys.argv[3])
TCK = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TCK
res = {"stock": [], "lean": []}
with Stack(ServerOptions()) as stack, asyncio.Runner(loop_factory=new_loop) as runner:
    wpid = stack.children["worker"].pid
    for i in range(pairs):
        for arm in (("stock", "lean") if i % 2 == 0 else ("lean", "stock")):
            port = stack.second_port
            env = {**stack._gateway_env(port)}
            cmd = stack._gateway_command(port) if arm == "stock" else [sys.executable, "-m", "bench.leangateway"]
            with stack._extra(SECOND_GATEWAY, cmd, env, port) as pid:
                load = LoadGenerator("127.0.0.1", port)
                runner.run(load.closed_loop(CONNECTIONS, 3, 0))
                runner.run(load.open_loop(rate, 5, 0.5, connections_for(rate)))  # settle
                g0, w0, t0 = cpu(pid), cpu(wpid), time.time()
                step = runner.run(load.open_loop(rate, secs, 0.0, connections_for(rate)))
                g1, w1 = cpu(pid), cpu(wpid)
                n = max(step.ok, 1)
                res[arm].append(((g1 - g0) / n * 1e6, (w1 - w0) / n * 1e6, step.latency_ms["p50"], step.latency_ms["p99"]))
                print(arm, step.brief(), f"gateway {res[arm][-1][0]:.1f} µs worker {res[arm][-1][1]:.1f} µs", flush=True)
for arm in res:
    print(arm, "median gateway µs", statistics.median(r[0] for r in res[arm]), "worker", statistics.median(r[1] for r in res[arm]),
          "p50", statistics.median(r[2] for r in res[arm]), "p99", statistics.median(r[3] for r in res[arm]))

"""Benchmark: fabric checks, pdwizard's way against the guide's way, side by side.

For 1, 4 and 16 simulated nodes of 8 NPUs each (every `hccn_tool` / `npu-smi` call
takes `tool_delay_ms`, 100 ms by default, as real tools take tens to hundreds of ms):

- ours: `CheckFlow` — one reused SSH connection per node, discovery in one round
  trip per node and all checks and pings in one more, nodes in parallel;
- the guide's way: the same tool calls (the same ping plan), each as its own SSH
  command, node after node, measured two ways: literally (`ssh node CMD` with the
  OpenSSH client, a new connection per command, as a loop in a terminal does) and
  generously (one reused connection per node, one command per call).

Run: python bench/fabric_checks.py [--nodes 1 4 16] [--delay-ms 100]
Prints a table; goal: 16 nodes within 2x of one node, and at least 30x faster than
the guide's way.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdwizard.fabric import fabric_batch  # noqa: E402
from pdwizard.flow import CheckFlow  # noqa: E402
from pdwizard.models import Session  # noqa: E402
from pdwizard.nodechecks import selected_devices  # noqa: E402
from pdwizard.progress import PlainProgress  # noqa: E402
from pdwizard.remote.pool import RemotePool  # noqa: E402
from pdwizard.replay import targets_for  # noqa: E402
from pdwizard.report import Report  # noqa: E402
from pdwizard.sim import SimCluster  # noqa: E402
from pdwizard.sim.spec import SimSpec  # noqa: E402


def spec_for(n: int, delay_ms: int, subnet: int) -> SimSpec:
    nodes = [{"name": f"n{i}", "host": f"127.{subnet}.{i // 250}.{i % 250 + 1}", "port": 2222,
              "ip": f"10.{subnet}.{i // 250}.{i % 250 + 1}", "npus": 8, "tool_delay_ms": delay_ms}
             for i in range(n)]
    return SimSpec.model_validate({"node": nodes})


def session_for(spec: SimSpec) -> Session:
    """One node: 1P1D on 4+4 NPUs; more nodes: half prefill, half decode, TP8 each."""
    nodes = [{"name": n.name, "host": n.host, "ip": n.ip} for n in spec.nodes]
    if len(nodes) == 1:
        instances = [{"role": "prefill", "node": "n0", "devices": [0, 1, 2, 3], "port": 13700},
                     {"role": "decode", "node": "n0", "devices": [4, 5, 6, 7], "port": 13701}]
    else:
        half = len(nodes) // 2
        instances = [{"role": "prefill" if i < half else "decode", "node": n["name"],
                      "devices": list(range(8)), "port": 13700} for i, n in enumerate(nodes)]
    return Session.model_validate({
        "schema_version": 1, "name": f"bench-{len(nodes)}", "ssh": {"port": 2222},
        "nodes": nodes, "instances": instances, "model": {"path": "/model/Qwen3-30B-A3B"},
    })


class _Quiet(PlainProgress):
    def say(self, text: str) -> None:  # the bench prints its own table
        pass


async def ours(session: Session, cluster: SimCluster) -> tuple[float, CheckFlow]:
    """Our whole check flow, timed; the flow is returned for its report and facts."""
    report = Report(session=session.name, started_at="bench")
    async with RemotePool(targets_for(session, cluster)) as pool:
        t0 = time.perf_counter()
        flow = CheckFlow(session, pool, report, _Quiet())
        await flow.run()
        return time.perf_counter() - t0, flow


async def guide_reused(session: Session, cluster: SimCluster, plan) -> tuple[float, int]:
    """The same tool calls, one SSH command each on a reused connection, node after node."""
    async with RemotePool(targets_for(session, cluster)) as pool:
        for node in session.nodes:  # connections opened up front: not timed
            await pool.connect(node.name)
        t0 = time.perf_counter()
        calls = 0
        devices = selected_devices(session)
        for node in session.nodes:
            for argv in _guide_commands(devices[node.name], plan.by_node.get(node.name, [])):
                await pool.run(node.name, argv, timeout=120)
                calls += 1
        return time.perf_counter() - t0, calls


async def guide_ssh(session: Session, cluster: SimCluster, plan) -> tuple[float, int]:
    """The guide's loop as typed: `ssh node CMD` per tool call (OpenSSH, new connection each)."""
    t0 = time.perf_counter()
    calls = 0
    devices = selected_devices(session)
    for node, target in zip(session.nodes, targets_for(session, cluster)):
        base = ["ssh", "-q", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={target.known_hosts}", "-i", str(target.identity_file),
                "-p", str(target.port), f"root@{target.host}", "--"]
        for argv in _guide_commands(devices[node.name], plan.by_node.get(node.name, [])):
            proc = await asyncio.create_subprocess_exec(
                *base, shlex.join(argv), stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
            await proc.wait()
            calls += 1
    return time.perf_counter() - t0, calls


def _guide_commands(devices: list[int], pings) -> list[list[str]]:
    """The guide's commands as separate SSH commands, for the same work as ours."""
    cmds: list[list[str]] = [["npu-smi", "info"], ["npu-smi", "info", "-m"],
                             ["hostname"], ["hostname", "-I"], ["cat", "/etc/hccn.conf"]]
    cmds += [["hccn_tool", "-i", str(d), "-ip", "-g"] for d in range(8)]
    for line in fabric_batch(devices, pings).lines:
        # "pdw_call KEY "$HCCN_TOOL" args..." -> ["hccn_tool", args...]
        words = shlex.split(line)[2:]
        cmds.append(["hccn_tool", *words[1:]])
    return cmds


async def bench(n: int, delay_ms: int, subnet: int) -> dict:
    spec = spec_for(n, delay_ms, subnet)
    session = session_for(spec)
    async with SimCluster(spec) as cluster:
        t_ours, done = await ours(session, cluster)
        if done.report.failures():  # a bench of a broken cluster measures nothing useful
            bad = done.report.failures()[0]
            raise SystemExit(f"the simulated cluster is not healthy: {bad.where}: {bad.message}")
        # the plan ours used, so both sides do the same pings
        report = Report(session=session.name, started_at="bench")
        async with RemotePool(targets_for(session, cluster)) as pool:
            flow = CheckFlow(session, pool, report, _Quiet())
            await flow.connect()
            await flow.discover()
            plan = flow.plan()
        t_reused, calls = await guide_reused(session, cluster, plan)
        t_ssh, _ = await guide_ssh(session, cluster, plan)
    return {"nodes": n, "ours_s": t_ours, "reused_s": t_reused, "ssh_s": t_ssh, "calls": calls,
            "pings": plan.size}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--delay-ms", type=int, default=100)
    args = ap.parse_args()
    rows = []
    for k, n in enumerate(args.nodes):
        rows.append(await bench(n, args.delay_ms, 200 + k))
        r = rows[-1]
        print(f"{r['nodes']:>3} nodes: ours {r['ours_s']:.2f} s, guide's way {r['ssh_s']:.2f} s "
              f"(ssh per command) / {r['reused_s']:.2f} s (reused connection), {r['calls']} tool "
              f"calls ({r['pings']} pings)", flush=True)
    base = rows[0]["ours_s"]
    print("\n| nodes x 8 NPUs | tool calls (pings) | ours (s) | guide, ssh per command (s) | "
          "speed-up | guide, reused connection (s) | speed-up | ours vs 1 node |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nodes']} | {r['calls']} ({r['pings']}) | {r['ours_s']:.2f} | {r['ssh_s']:.2f} | "
              f"{r['ssh_s'] / r['ours_s']:.1f}x | {r['reused_s']:.2f} | "
              f"{r['reused_s'] / r['ours_s']:.1f}x | {r['ours_s'] / base:.2f}x |")


if __name__ == "__main__":
    asyncio.run(main())

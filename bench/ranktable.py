"""Benchmark: ranktable generation against discovery + fabric checks, same cluster, same run.

For each size (default 1, 16 and 128 nodes of 8 NPUs, A2):

- generation: `build_ranktable` + `ranktable_json` over synthetic `NodeFacts` of that
  cluster (the best of several repetitions, each a full build and serialisation);
- checks: `CheckFlow.run()` (connect, discovery, node checks, fabric checks and the
  ping matrix) against a `SimCluster` of the same nodes over real SSH, as
  bench/fabric_checks.py runs it, with `tool_delay_ms` per fake tool call (0 by
  default: the simulator's own cost only, so the ratio is a worst case for us; real
  tools take tens to hundreds of ms).

The session is bench/fabric_checks.py's: 1 node = 1P1D on 4+4 NPUs, more = half the
nodes prefill, half decode, TP8 each. The table built from the facts discovery really
found is checked to be identical to the synthetic one.

Run: python bench/ranktable.py [--nodes 1 16 128] [--delay-ms 0] [--max-sim-nodes 128]
Goal: generation under 1% of discovery + checks at every size.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fabric_checks import ours, session_for, spec_for  # noqa: E402

from pdwizard.models import Session  # noqa: E402
from pdwizard.ranktable import build_ranktable, ranktable_json  # noqa: E402
from pdwizard.report import NodeFacts, NpuFacts  # noqa: E402
from pdwizard.sim import SimCluster  # noqa: E402
from pdwizard.sim.spec import SimSpec  # noqa: E402


def synthetic_facts(spec: SimSpec) -> dict[str, NodeFacts]:
    """What discovery finds on the simulated nodes, without running it."""
    return {n.name: NodeFacts(node=n.name, hostname=n.name, addresses=[n.ip], nics={n.nic: [n.ip]}, soc="A2",
                              npus=[NpuFacts(device=d, npu_id=d, ip=ip, netmask=n.npu_netmask)
                                    for d, ip in enumerate(n.npu_ips)])
            for n in spec.nodes}


def time_generation(session: Session, facts: dict[str, NodeFacts]) -> tuple[float, str]:
    """Best wall time (s) of build + serialise, over enough repetitions to take >= 0.2 s."""
    text = ranktable_json(build_ranktable(session, facts))
    best, spent, reps = float("inf"), 0.0, 0
    while spent < 0.2 or reps < 5:
        t0 = time.perf_counter()
        ranktable_json(build_ranktable(session, facts))
        dt = time.perf_counter() - t0
        best, spent, reps = min(best, dt), spent + dt, reps + 1
    return best, text


async def time_checks(session: Session, spec: SimSpec) -> tuple[float, dict[str, NodeFacts]]:
    async with SimCluster(spec) as cluster:
        elapsed, flow = await ours(session, cluster)
    bad = flow.report.failures()
    if bad:
        raise SystemExit(f"the simulated cluster is not healthy: {bad[0].where}: {bad[0].message}")
    return elapsed, flow.facts


async def bench(n: int, delay_ms: int, subnet: int, simulate: bool) -> dict:
    spec = spec_for(n, delay_ms, subnet)
    session = session_for(spec)
    gen_s, text = time_generation(session, synthetic_facts(spec))
    row = {"nodes": n, "npus": 8 * n, "bytes": len(text), "gen_s": gen_s, "checks_s": None}
    if simulate:
        row["checks_s"], facts = await time_checks(session, spec)
        if ranktable_json(build_ranktable(session, facts)) != text:
            raise SystemExit(f"{n} nodes: the table from discovered facts differs from the synthetic one")
    return row


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, nargs="+", default=[1, 16, 128])
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--max-sim-nodes", type=int, default=128,
                    help="sizes above this get generation timed only (the simulator is heavy)")
    args = ap.parse_args()
    rows = []
    for k, n in enumerate(args.nodes):
        rows.append(await bench(n, args.delay_ms, 210 + k, n <= args.max_sim_nodes))
        r = rows[-1]
        checks = f"{r['checks_s']:.2f} s" if r["checks_s"] is not None else "not simulated"
        print(f"{n:>4} nodes: ranktable {r['gen_s'] * 1e3:8.3f} ms ({r['bytes']} bytes)   "
              f"discovery + checks {checks}", flush=True)
    print(f"\nA2, 8 NPUs per node, tool_delay_ms = {args.delay_ms}, {time.strftime('%Y-%m-%d')}\n")
    print("| nodes | NPUs | ranktable.json | build + serialise (ms) | discovery + checks, sim (s) | ratio |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if r["checks_s"] is None:
            checks, ratio = "not measured", "n/a"
        else:
            checks, ratio = f"{r['checks_s']:.2f}", f"{100 * r['gen_s'] / r['checks_s']:.3f}%"
        print(f"| {r['nodes']} | {r['npus']} | {r['bytes']} B | {r['gen_s'] * 1e3:.3f} | {checks} | {ratio} |")


if __name__ == "__main__":
    asyncio.run(main())

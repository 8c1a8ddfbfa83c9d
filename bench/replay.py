"""Benchmark: a full demo replay, launch to verified to stopped, against its floor.

Runs `run_replay` (what `pdwizard --demo` runs) against the built-in demo spec, where each
simulated `vllm serve` takes `vllm_startup_s` = 2 s to answer /health and 5 ms per token.
The floor is the slowest instance's simulated start-up time: no launch can be verified
sooner. Timed: the launch, verify and stop steps of the report (launch to verified to
stopped, each step's own monotonic clock); the whole replay (simulator start, SSH, discovery,
checks, render, upload, launch, verify, stop, simulator stop) is shown beside it.

Run: python bench/replay.py [--runs 5] [--spec FILE] [--poll S] [--trace]
Prints a markdown table; goal: launch to stopped within 1.2x of the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pdwizard.cli import asset  # noqa: E402
from pdwizard.progress import PlainProgress  # noqa: E402
from pdwizard.replay import LAUNCH_POLL_S, ReplayOptions, run_replay  # noqa: E402
from pdwizard.session import load_session  # noqa: E402
from pdwizard.sim import load_spec  # noqa: E402


class _Timed(PlainProgress):
    """Keeps every line with its time since the run began (printed with --trace), prints nothing."""

    def __init__(self) -> None:
        super().__init__(open(os.devnull, "w"))
        self.t0 = time.perf_counter()
        self.lines: list[tuple[float, str]] = []

    def say(self, text: str) -> None:
        self.lines.append((time.perf_counter() - self.t0, text))


def floor_of(spec_path: Path, session_path: Path) -> float:
    """The slowest instance's simulated start-up: the spec's vllm_startup_s of its node."""
    spec, session = load_spec(spec_path), load_session(session_path)
    by_host = {(n.host, n.port): n for n in spec.nodes}
    startup = []
    for inst in session.instances:
        node = session.node(inst.node)
        sim = by_host[(node.host, session.ssh_target_args(node.name)["port"])]
        startup.append(sim.vllm_startup_s)
    return max(startup)


async def one(spec: Path, session: Path, poll: float, trace: bool) -> dict:
    progress = _Timed()
    out = Path(f"/tmp/pdwizard-bench-replay-{time.time_ns()}")
    t0 = time.perf_counter()
    code = await run_replay(ReplayOptions(session_path=session, sim_spec=spec, out_dir=out, poll_interval=poll),
                            progress)
    whole = time.perf_counter() - t0
    import json
    import shutil

    report = json.loads((out / "report.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    steps = {s["name"]: s["duration_s"] for s in report["steps"]}
    if code != 0 or not all(k in steps for k in ("launch", "verify", "stop")):
        for t, line in progress.lines:
            print(f"{t:7.3f} {line}", file=sys.stderr)
        raise SystemExit(f"the replay failed (exit {code}): not timing it")
    if trace:
        for t, line in progress.lines:
            if line.startswith(("launch", "readiness", "verify", "stop")):
                print(f"  {t:7.3f} {line[:110]}")
    return {"whole": whole, "launch": steps["launch"], "verify": steps["verify"], "stop": steps["stop"],
            "checks": sum(v for k, v in steps.items() if k not in ("launch", "verify", "stop"))}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--spec", type=Path, default=asset("demo-cluster.toml"))
    ap.add_argument("--session", type=Path, default=asset("demo-session.toml"))
    ap.add_argument("--poll", type=float, default=LAUNCH_POLL_S, help="launch health poll interval (s)")
    ap.add_argument("--trace", action="store_true", help="print the launch/verify/stop lines with times")
    args = ap.parse_args()
    floor = floor_of(args.spec, args.session)
    rows = []
    for _ in range(args.runs):
        rows.append(await one(args.spec, args.session, args.poll, args.trace))
    print(f"floor: {floor:.2f} s (slowest instance's simulated start-up); launch poll interval {args.poll} s\n")
    print("| run | launch (s) | verify (s) | stop (s) | launch to stopped (s) | ratio to floor | whole replay (s) |")
    print("|---|---|---|---|---|---|---|")
    spans = []
    for i, r in enumerate(rows, 1):
        span = r["launch"] + r["verify"] + r["stop"]
        spans.append(span)
        print(f"| {i} | {r['launch']:.2f} | {r['verify']:.2f} | {r['stop']:.2f} | {span:.2f} | "
              f"{span / floor:.2f}x | {r['whole']:.2f} |")
    med = statistics.median(spans)
    print(f"| median | {statistics.median(r['launch'] for r in rows):.2f} | "
          f"{statistics.median(r['verify'] for r in rows):.2f} | {statistics.median(r['stop'] for r in rows):.2f} | "
          f"{med:.2f} | {med / floor:.2f}x | {statistics.median(r['whole'] for r in rows):.2f} |")
    print(f"\nlaunch to stopped: median {med:.2f} s = {med / floor:.2f}x the {floor:.2f} s floor "
          f"(goal 1.2x: {'met' if med / floor <= 1.2 else 'missed'})")


if __name__ == "__main__":
    asyncio.run(main())

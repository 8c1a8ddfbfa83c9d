"""Benchmark: the TUI's launch step under a log flood, against the same UI idle, in one run.

Issue 6: "with three processes each logging 5,000 lines a second for 10 seconds, the UI still
answers a key within 100 ms and memory stays bounded".

Setup, on this machine: a SIMULATED cluster in its own process (`python -m pdwizard.sim`, the
demo's 1P2D on 127.0.77.x), so that its SSH servers do not share the UI's event loop; the real
app (PdWizardApp) headless through `App.run_test`, which drives the wizard to the launch step
through the core and launches with `l`. Headless Textual skips turning frames into terminal
bytes: this app does it anyway (`render_segments`, output discarded), so every frame costs what
it costs on a terminal.

Phases, each `--presses` key presses `--gap` s apart (plus a random 0-50 ms, so that they never
lock onto the panes' flush timer):
- idle: the deployment is up and quiet; the log panes hold the start-up lines;
- busy: each of the three vLLM instances is told to log `--rate` lines a second for
  `--seconds` (the fake vLLM's POST /sim/log); the presses run while they do; then the phase
  waits until every line reached the panes.

Latency of a key: from posting the key event (as the terminal driver does) to the end of the
first frame drawn after its action ran. The presses cycle through `p` (pause the log shown, then
follow it again: the cheap action; following again writes the held lines) and `down` / `up` in
the process table (the log pane shown follows the table's row: a pane that was hidden redraws
from what it kept). RSS of this process is sampled every 0.1 s in a thread.

Run: python bench/tui_logs.py [--rate 5000] [--seconds 10] [--presses 54] [--size 200x50]
Goals: key p99 < 100 ms while busy; RSS flat once the panes are full (bounded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events
from textual._compositor import CompositorUpdate

from pdwizard.app import PdWizardApp
from pdwizard.screens.launch import LaunchStep
from pdwizard.widgets.process_table import ProcessTable
from pdwizard.wizard import Wizard

NET = "127.0.77"
ASSETS = ROOT / "pdwizard" / "assets"


# ------------------------------------------------------------------ the cluster, in its own process


def write_spec(tmp: Path) -> Path:
    """The demo cluster on NET (the demo's own addresses may be in use by a test)."""
    text = (ASSETS / "demo-cluster.toml").read_text().replace('host = "127.0.1.', f'host = "{NET}.')
    path = tmp / "bench-cluster.toml"
    path.write_text(text)
    return path


def start_cluster(tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    """`python -m pdwizard.sim SPEC` in the foreground of a child process; (process, key, known_hosts)."""
    proc = subprocess.Popen([sys.executable, "-m", "pdwizard.sim", str(write_spec(tmp)), "--workdir",
                             str(tmp / "sim")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=ROOT)
    key = known = None
    for line in proc.stdout:
        if line.startswith("SIMULATED client key: "):
            key = Path(line.split(": ", 1)[1].strip())
        elif line.startswith("SIMULATED known_hosts: "):
            known = Path(line.split(": ", 1)[1].strip())
        elif line.startswith("SIMULATED running"):
            break
    if key is None or known is None:
        proc.kill()
        raise SystemExit(f"the simulated cluster did not start (exit {proc.poll()})")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # keep its pipe drained
    return proc, key, known


def session_data(key: Path, known: Path) -> dict:
    data = tomllib.loads((ASSETS / "demo-session.toml").read_text())
    data["ssh"].update({"identity_file": str(key), "known_hosts": str(known)})
    for node in data["nodes"]:
        node["host"] = node["host"].replace("127.0.1.", f"{NET}.")
    return data


# ------------------------------------------------------------------ the app, measured


class BenchApp(PdWizardApp):
    """The wizard, turning each frame into terminal bytes as on a terminal, and timing frames."""

    def __init__(self, wizard: Wizard) -> None:
        super().__init__(wizard)
        self.frames = 0
        self.waiting = False
        self.frame_at = 0.0
        self.frame_seen = asyncio.Event()

    def _display(self, screen, renderable) -> None:
        if isinstance(renderable, CompositorUpdate) and not self._batch_count:
            renderable.render_segments(self.console)  # what a terminal driver writes, discarded
            self.frames += 1
            if self.waiting:
                self.waiting = False
                self.frame_at = time.perf_counter()
                self.frame_seen.set()
        super()._display(screen, renderable)


class Memory:
    """RSS of this process every `interval` s, from a thread (the loop may be busy)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as f:
            return next(int(ln.split()[1]) * 1024 for ln in f if ln.startswith("VmRSS:"))

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.samples.append((time.monotonic(), self.rss()))

    def start(self) -> Memory:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, t0: float, t1: float) -> list[int]:
        return [r for t, r in self.samples if t0 <= t <= t1]


async def press(app: BenchApp, target, key: str, action: str) -> float:
    """ms from posting `key` (as the terminal driver posts it) to the end of the first frame
    drawn after `target`'s action `action` ran."""
    original = getattr(target, f"action_{action}")
    ran = asyncio.Event()

    def timed(*a) -> object:
        out = original(*a)
        app.waiting = True
        app.frame_seen.clear()
        ran.set()
        return out

    setattr(target, f"action_{action}", timed)
    try:
        t0 = time.perf_counter()
        app.post_message(events.Key(key, key if len(key) == 1 else None))
        await asyncio.wait_for(ran.wait(), 10)
        await asyncio.wait_for(app.frame_seen.wait(), 10)
    finally:
        delattr(target, f"action_{action}")
    return (app.frame_at - t0) * 1000


async def presses(app: BenchApp, step: LaunchStep, n: int, gap: float) -> dict[str, list[float]]:
    """`n` presses `gap` s apart, in cycles of p (pause), p (follow), down or up in the table
    (the log pane shown follows the table's row)."""
    out: dict[str, list[float]] = {"p": [], "table": []}
    table = step.query_one(ProcessTable)
    table.focus()
    await asyncio.sleep(0.1)
    cycle = [("p", step, "p", "pause"), ("p", step, "p", "pause"), ("table", table, "down", "cursor_down"),
             ("p", step, "p", "pause"), ("p", step, "p", "pause"), ("table", table, "up", "cursor_up")]
    for i in range(n):
        kind, target, key, action = cycle[i % len(cycle)]
        out[kind].append(await press(app, target, key, action))
        await asyncio.sleep(gap + random.uniform(0, 0.05))
    view = step.active_view()
    if view is not None and view.paused:
        view.toggle_pause()
    return out


def stats(values: list[float]) -> dict:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
    return {"n": len(values), "p50": statistics.median(values), "p99": p99, "max": values[-1]}


async def drive(args: argparse.Namespace, data: dict) -> dict:
    wizard = Wizard(data)
    app = BenchApp(wizard)
    width, height = (int(x) for x in args.size.split("x"))
    memory = Memory().start()
    result: dict = {}
    async with app.run_test(size=(width, height)) as pilot:
        await wizard.connect()
        await wizard.discover()
        await wizard.run_checks()
        preview = await wizard.build_preview()
        if preview.blocking:
            raise SystemExit(f"the preview blocks: {preview.blocking}")
        screen = app.wizard_screen()
        screen._show([s.STEP_ID for s in screen.steps].index("launch"))
        await pilot.pause()
        step = screen.query_one(LaunchStep)
        await pilot.press("l")
        deadline = time.monotonic() + 60
        while not (wizard.running and step.phase is None):
            if time.monotonic() > deadline:
                raise SystemExit("the launch did not finish in 60 s")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # the start-up lines reach the panes
        result["idle"] = await phase(app, step, memory, args, flood=False)
        result["busy"] = await phase(app, step, memory, args, flood=True)
        await wizard.stop()
    memory.stop()
    result["rss_samples"] = memory.samples
    return result


async def phase(app: BenchApp, step: LaunchStep, memory: Memory, args: argparse.Namespace, *, flood: bool) -> dict:
    views = step.views
    received0 = {n: v.received for n, v in views.items()}
    frames0 = app.frames
    t0 = time.monotonic()
    if flood:
        async with aiohttp.ClientSession() as client:
            for spec in step.wizard.plan.instances:
                async with client.post(f"http://{spec.health_host}:{spec.port}/sim/log",
                                       json={"lines_per_s": args.rate, "seconds": args.seconds}) as r:
                    assert r.status == 202, await r.text()
    keys = await presses(app, step, args.presses, args.gap)
    t_keys = time.monotonic()
    if flood:  # let the flood finish and drain, then look at memory once more
        expected = int(args.rate * args.seconds)
        deadline = time.monotonic() + args.seconds + 30
        while any(views[s.name].received - received0[s.name] < expected for s in step.wizard.plan.instances):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    t1 = time.monotonic()
    rss = memory.between(t0, t1)
    received = {n: v.received - received0[n] for n, v in views.items()}
    return {"keys": {k: stats(v) for k, v in keys.items()}, "raw": keys, "seconds": t1 - t0,
            "keys_seconds": t_keys - t0, "frames": app.frames - frames0, "received": received,
            "kept": {n: len(v.kept) for n, v in views.items()}, "shown": {n: v.line_count for n, v in views.items()},
            "rss_first": rss[0] if rss else 0, "rss_max": max(rss) if rss else 0, "rss_last": rss[-1] if rss else 0,
            "rss_by_second": [memory.between(t0 + s, t0 + s + 1)[-1:] for s in range(int(t1 - t0) + 1)]}


def report(args: argparse.Namespace, result: dict) -> str:
    idle, busy = result["idle"], result["busy"]
    mb = 1 / (1024 * 1024)
    lines = [f"load average before / after: {result['load'][0]} / {result['load'][1]} ({os.cpu_count()} CPUs)",
             f"launch step, {args.size}, 3 vLLM instances x {args.rate:,.0f} lines/s x {args.seconds:g} s "
             f"({args.presses} key presses per phase)", "",
             f"{'key latency (ms)':<28}{'idle p50':>9}{'p99':>8}{'max':>8}   {'busy p50':>9}{'p99':>8}{'max':>8}"
             f"   {'p99 ratio':>9}"]
    for key, label in (("p", "p (pause / follow)"), ("table", "down/up (switch pane)")):
        i, b = idle["keys"][key], busy["keys"][key]
        lines.append(f"{label:<28}{i['p50']:>9.1f}{i['p99']:>8.1f}{i['max']:>8.1f}   {b['p50']:>9.1f}{b['p99']:>8.1f}"
                     f"{b['max']:>8.1f}   {b['p99'] / i['p99']:>8.1f}x")
    total = sum(busy["received"].values())
    lines += ["", f"{'memory (RSS, MB)':<28}{'first':>9}{'max':>8}{'last':>8}",
              f"{'idle':<28}{idle['rss_first'] * mb:>9.1f}{idle['rss_max'] * mb:>8.1f}{idle['rss_last'] * mb:>8.1f}",
              f"{'busy (flood, then drained)':<28}{busy['rss_first'] * mb:>9.1f}{busy['rss_max'] * mb:>8.1f}"
              f"{busy['rss_last'] * mb:>8.1f}",
              "busy RSS each second (MB): " + " ".join(f"{s[0] * mb:.0f}" for s in busy["rss_by_second"] if s),
              "", f"lines received by the panes while busy: {total:,} in {busy['seconds']:.1f} s "
                  f"({total / busy['seconds']:,.0f}/s); kept per pane: "
                  + ", ".join(f"{n} {k:,}" for n, k in busy["kept"].items()),
              f"frames drawn: idle {idle['frames']:,} in {idle['seconds']:.1f} s, busy {busy['frames']:,} in "
              f"{busy['seconds']:.1f} s"]
    worst = busy["keys"]["p"]["p99"]
    lines.append(f"goal p99 < 100 ms while busy (key p): {'met' if worst < 100 else 'NOT met'} ({worst:.1f} ms)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=5000.0, help="lines per second per instance (default 5000)")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the instances log (default 10)")
    ap.add_argument("--presses", type=int, default=54, help="key presses per phase (default 54)")
    ap.add_argument("--gap", type=float, default=0.15, help="seconds between presses (default 0.15)")
    ap.add_argument("--size", default="200x50", help="terminal size (default 200x50)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pdw-bench-") as tmp:
        cluster, key, known = start_cluster(Path(tmp))
        try:
            load = os.getloadavg()
            result = asyncio.run(drive(args, session_data(key, known)))
            result["load"] = (" ".join(f"{x:.2f}" for x in load), " ".join(f"{x:.2f}" for x in os.getloadavg()))
        finally:
            cluster.send_signal(2)
            try:
                cluster.wait(30)
            except subprocess.TimeoutExpired:
                cluster.kill()
    print(report(args, result))
    if args.json:
        result.pop("rss_samples", None)
        args.json.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

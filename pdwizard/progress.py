"""Showing a headless run: live per-node progress on a terminal, plain lines otherwise.

The flow reports through the small `Progress` interface so the replay, the tests
and (later) the TUI can each show it their own way without the flow knowing.
"""

from __future__ import annotations

import sys
from typing import Protocol, TextIO

from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from pdwizard.remote.pool import CommandResult
from pdwizard.report import Report, Status

_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: "dim"}


class Progress(Protocol):
    """What the flow tells whoever is watching."""

    def begin(self, nodes: list[str]) -> None: ...
    def node(self, node: str, text: str, status: Status | None = None) -> None: ...
    def say(self, text: str) -> None: ...
    def command(self, result: CommandResult) -> None: ...
    def end(self) -> None: ...


class PlainProgress:
    """One line per event: for logs, CI and pipes."""

    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.verbose = verbose

    def begin(self, nodes: list[str]) -> None:
        self.say(f"nodes: {', '.join(nodes)}")

    def node(self, node: str, text: str, status: Status | None = None) -> None:
        mark = f" [{status.value.upper()}]" if status else ""
        self.say(f"[{node}] {text}{mark}")

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def command(self, result: CommandResult) -> None:
        if self.verbose:
            self.say(format_command(result))

    def end(self) -> None:
        pass


class LiveProgress(PlainProgress):
    """A rich progress display with one line per node, for an interactive terminal."""

    def __init__(self, console: Console, verbose: bool = False) -> None:
        super().__init__(console.file, verbose)
        self.console = console
        self._bar = RichProgress(SpinnerColumn(), TextColumn("{task.fields[node]:<12}"),
                                 TextColumn("{task.description}"), TimeElapsedColumn(),
                                 console=console, transient=False)
        self._tasks: dict[str, int] = {}

    def begin(self, nodes: list[str]) -> None:
        self._bar.start()
        for n in nodes:
            self._tasks[n] = self._bar.add_task("waiting", node=n, total=None)

    def node(self, node: str, text: str, status: Status | None = None) -> None:
        task = self._tasks.get(node)
        if task is None:
            return self.say(f"[{node}] {text}")
        style = _STYLE.get(status) if status else None
        desc = f"[{style}]{text}[/]" if style else text
        done = status in (Status.OK, Status.WARN, Status.FAIL)
        self._bar.update(task, description=desc, total=1 if done else None,
                         completed=1 if done else 0)

    def say(self, text: str) -> None:
        self._bar.console.print(text, markup=False, highlight=False)

    def end(self) -> None:
        self._bar.stop()


def format_command(r: CommandResult) -> str:
    """The --verbose line: node, exit status, duration, the command as it ran."""
    first = r.command.splitlines()[0] if r.command else ""
    return f"[{r.node}] exit {r.exit_status} in {r.duration_s:.3f}s: {first}"


def make_progress(verbose: bool = False, stream: TextIO | None = None) -> Progress:
    """Live progress on a TTY, plain lines when piped."""
    stream = stream or sys.stdout
    if stream.isatty():
        return LiveProgress(Console(file=stream), verbose)
    return PlainProgress(stream, verbose)


def summary(report: Report, stream: TextIO | None = None) -> None:
    """The table at the end of a run, then every failure with its hint."""
    console = Console(file=stream or sys.stdout, width=max(100, Console().width))
    table = Table(title=f"pdwizard {report.session}" + (" (SIMULATED)" if report.simulated else ""))
    for col in ("node", "host", "SoC", "NPUs", "driver", "CANN", "vLLM", "vllm-ascend",
                "ok", "warn", "fail"):
        table.add_column(col)
    for name, facts in report.nodes.items():
        counts = _counts(report, name)
        table.add_row(name, facts.hostname or "?", facts.soc or "?", str(len(facts.npus)),
                      facts.driver_version or "-", facts.cann_version or "-",
                      facts.packages.get("vllm", "-"), facts.packages.get("vllm_ascend", "-"),
                      str(counts[Status.OK]), str(counts[Status.WARN]), str(counts[Status.FAIL]))
    if report.nodes:
        console.print(table)
    verify = next((s for s in report.steps if s.name == "verify"), None)
    if verify is not None and verify.results:
        console.print(verify_table(verify.results))
    for step in report.steps:
        console.print(f"{step.name:<10} {step.status.value.upper():<5} {step.duration_s:.2f}s"
                      + (f"  {step.note}" if step.note else ""), markup=False, highlight=False)
    for status in (Status.WARN, Status.FAIL):
        for r in (r for s in report.steps for r in s.results if r.status is status):
            where = f"{r.where}: " if r.node != "-" else ""
            console.print(f"{status.value.upper()} {r.check}: {where}{r.message}", markup=False,
                          highlight=False)
            if r.hint:
                console.print(f"     fix: {r.hint}", markup=False, highlight=False)
    console.print(f"result: {report.status.value.upper()} (exit {report.exit_code})",
                  markup=False, highlight=False)


def verify_table(results: list) -> Table:
    """One row per [[verify]]: the prompt, the answer, timings, the instances that served it."""
    table = Table(title="verify (through the proxy)", expand=True)
    table.add_column("prompt", overflow="fold", ratio=1)
    table.add_column("answer", overflow="fold", ratio=2)
    for col in ("TTFT", "TPOT", "total", "tokens", "prefill", "decode", "result"):
        table.add_column(col, no_wrap=True)
    for r in results:
        d = r.data or {}
        table.add_row(_cut(d.get("prompt") or r.target or "", 30), _cut(d.get("text") or "", 48),
                      _ms(d.get("ttft_s")), _ms(d.get("tpot_s")),
                      "-" if d.get("total_s") is None else f"{d['total_s']:.2f} s", str(d.get("tokens", "-")),
                      d.get("prefill") or d.get("prefill_address") or "-",
                      d.get("decode") or d.get("decode_address") or "-",
                      f"[{_STYLE[r.status]}]{r.status.value.upper()}[/]"
                      + (" (KV recomputed)" if d.get("kv_recomputed") else ""))
    return table


def _cut(text: str, n: int) -> str:
    one = " ".join(str(text).split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _ms(s: float | None) -> str:
    return "-" if s is None else f"{s * 1000:.0f} ms"


def _counts(report: Report, node: str) -> dict[Status, int]:
    counts = {s: 0 for s in Status}
    for step in report.steps:
        for r in step.results:
            if r.node == node:
                counts[r.status] += 1
    return counts

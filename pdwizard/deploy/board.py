"""Per-process state of a launch as the operator sees it (the TUI's process table), no Textual.

A launch reports through its observer: the readiness line, events and failures. The board
turns those into one row per process: pending, starting, healthy, failed or stopped, with
its pid and when it entered its state, on the clock the caller gives (the TUI's, frozen in
tests). The launch result, once it is back, is authoritative (`settle`); the events only
keep the rows current while it runs, which for a real model is minutes.

Events read (deploy.launch and deploy.restart word them so):
    started <name> (<label>) pid <pid>          -> starting
    <name> healthy after <s> s                  -> healthy
    cleanup: <node>: <name> (pgid ..) <outcome>  -> stopped by the launch's cleanup
    restart: <node>: <name> (pgid ..) <outcome>  -> stopped for a restart
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pdwizard.deploy.launch import Failure, LaunchResult
from pdwizard.deploy.plan import ProcessSpec
from pdwizard.deploy.stop import StopReport

STATES = ("pending", "starting", "healthy", "failed", "stopped")
_STARTED = re.compile(r"started (?P<name>\S+) \(.*\) pid (?P<pid>\d+)$")
_HEALTHY = re.compile(r"(?P<name>\S+) healthy after ")
_STOPPED = re.compile(r"(?P<why>cleanup|restart): \S+: (?P<name>\S+) \(pgid \S+\) (?P<outcome>\w+)")
_GONE = ("terminated", "killed", "not_running", "stale")


@dataclass
class ProcessRow:
    """One process as shown: `since` is when it was started, `until` when it stopped changing
    (healthy, failed, stopped), both on the board's clock."""

    name: str
    node: str
    role: str
    port: int
    state: str = "pending"
    pid: int | None = None
    since: float | None = None
    until: float | None = None
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.node}:{self.port}"

    def elapsed(self, now: float) -> float | None:
        """Seconds since it was started, up to when it became healthy, failed or stopped."""
        if self.since is None:
            return None
        return max(0.0, (self.until if self.until is not None else now) - self.since)


def failure_note(failure: Failure) -> str:
    """One short line: the exit status and the diagnoses' ids, else the reason."""
    if not failure.diagnoses:
        return failure.reason
    status = f"exit {failure.exit_status} · " if failure.exit_status is not None else ""
    return status + ", ".join(d.id for d in failure.diagnoses)


class ProcessBoard:
    """The rows of one launch (and of the restarts after it), fed by what the launch reports."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.rows: dict[str, ProcessRow] = {}

    def load(self, specs: Iterable[ProcessSpec]) -> None:
        """Start over with these processes, all pending."""
        self.rows = {s.name: ProcessRow(s.name, s.node, s.role, s.port) for s in specs}

    def names(self) -> list[str]:
        return list(self.rows)

    # -------------------------------------------------------------- what the launch reports

    def event(self, text: str) -> bool:
        """Apply one launch event; True when a row changed."""
        m = _STARTED.match(text)
        if m and m["name"] in self.rows:
            self._set(m["name"], "starting", pid=int(m["pid"]), since=self.clock(), note="")
            return True
        m = _HEALTHY.match(text)
        if m and m["name"] in self.rows:
            self._set(m["name"], "healthy", until=self.clock())
            return True
        m = _STOPPED.match(text)
        if m and m["name"] in self.rows:
            return self._stopped(m["name"], m["outcome"], "stopped by the cleanup" if m["why"] == "cleanup"
                                 else "stopped for the restart")
        return False

    def failure(self, failure: Failure) -> bool:
        """A failed process (a node-wide failure names no process: no row changes)."""
        if failure.process not in self.rows:
            return False
        self._set(failure.process, "failed", until=self.clock(), note=failure_note(failure))
        return True

    def settle(self, result: LaunchResult) -> None:
        """The launch is over: its result decides each row (what its cleanup stopped shows stopped)."""
        for name, proc in result.processes.items():
            row = self.rows.get(name)
            if row is None:
                continue
            if proc.pid is not None:
                row.pid = proc.pid
            if row.state not in ("stopped", "failed") and proc.state != row.state and proc.state in STATES:
                row.state = proc.state
                if proc.state in ("healthy", "failed") and row.until is None:
                    row.until = self.clock()
        if result.cleanup is not None:
            self.stopped(result.cleanup, "stopped by the cleanup")

    def stopped(self, report: StopReport, note: str = "stopped") -> None:
        """A stop's report: what it stopped (or found gone) shows stopped, what it left says so."""
        for node in report.nodes.values():
            for p in node.processes:
                if p.name in self.rows:
                    self._stopped(p.name, p.outcome, note)

    def restarting(self, name: str) -> None:
        if name in self.rows:
            self._set(name, "pending", note="restarting")

    # -------------------------------------------------------------- reading

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATES}
        for row in self.rows.values():
            out[row.state] = out.get(row.state, 0) + 1
        return out

    def all_healthy(self) -> bool:
        return bool(self.rows) and all(r.state == "healthy" for r in self.rows.values())

    def starting(self) -> bool:
        return any(r.state == "starting" for r in self.rows.values())

    # -------------------------------------------------------------- internals

    def _stopped(self, name: str, outcome: str, note: str) -> bool:
        row = self.rows[name]
        if outcome == "left":
            row.note = "still alive after the stop (SIGKILL did not end it)"
            return True
        if outcome not in _GONE or row.state == "failed":
            return False
        row.state, row.note = "stopped", note
        row.until = self.clock() if row.since is not None else None
        return True

    def _set(self, name: str, state: str, *, pid: int | None = None, since: float | None = None,
             until: float | None = None, note: str | None = None) -> None:
        row = self.rows[name]
        row.state = state
        if pid is not None:
            row.pid = pid
        if since is not None:
            row.since, row.until = since, None
        if until is not None:
            row.until = until
        if note is not None:
            row.note = note


__all__ = ["STATES", "ProcessBoard", "ProcessRow", "failure_note"]

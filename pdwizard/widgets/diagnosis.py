"""Why a launch or a restart failed: the reason, each diagnosis with its fix, the last log lines."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from pdwizard import deploy


class DiagnosisView(VerticalScroll):
    """Why the launch (or a restart) failed: reason, diagnoses, fix, the last log lines."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.failures: list[deploy.Failure] = []
        self.note = ""

    def compose(self) -> ComposeResult:
        yield Static(id="launch-diagnosis-text")

    def show(self, failures: list[deploy.Failure], note: str = "") -> None:
        """Show `failures` with `note` (what was stopped); none hides the pane."""
        self.failures, self.note = list(failures), note
        self.set_class(bool(failures), "-shown")
        text = Text()
        for f in failures:
            who = f"{f.process} on {f.node}" if f.process else f"node {f.node}"
            text.append("✗ ", style="bold red").append(f"{who}: ", style="bold").append(f"{f.reason}\n")
            if note:
                text.append(f"  {note}\n", style="italic")
            for d in f.diagnoses:
                text.append(f"  {d.id}", style="bold yellow").append(f"  {d.meaning}\n")
                text.append("    fix: ", style="bold").append(f"{d.fix}\n")
                text.append("    matched: ", style="dim").append(f"{d.line}\n", style="dim")
            if f.hint:
                text.append("  fix: ", style="bold").append(f"{f.hint}\n")
            if f.log_tail:
                text.append(f"  last {len(f.log_tail)} log line(s):\n", style="bold")
                for line in f.log_tail:
                    text.append(f"  │ {line}\n", style="dim")
        text.rstrip()
        self.query_one("#launch-diagnosis-text", Static).update(text)

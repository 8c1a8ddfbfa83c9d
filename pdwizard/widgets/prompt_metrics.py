"""What one prompt's outcome says: timings, who served it, the KV transfer, and its problems.

Timings go through `timing()`, the one formatter for every duration the prompt pane shows.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from pdwizard.verify import VerifyOutcome


def timing(seconds: float | None) -> str:
    """A duration from the core (TTFT, TPOT, total) as the pane shows it."""
    if seconds is None:
        return "-"
    ms = seconds * 1000.0
    if ms < 10:
        return f"{ms:.1f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    return f"{seconds:.2f} s"


def verdict(outcome: VerifyOutcome) -> str:
    """ok, or FAIL: one word for the history."""
    return "ok" if outcome.ok else "FAIL"


def metrics_text(outcome: VerifyOutcome) -> Text:
    """Three kinds of line: timings; served by and the KV header; then each problem and note."""
    r = outcome.result
    out = Text()
    out.append(" OK " if outcome.ok else " FAIL ", style="bold reverse green" if outcome.ok else "bold reverse red")
    out.append(f" TTFT {timing(r.ttft_s)} · TPOT {timing(r.tpot_s)} · total {timing(r.total_s)}"
               f" · {r.tokens} tokens")
    out.append("\nserved by ")
    out.append(outcome.served_by, style="bold")
    kv = r.kv or "no header"
    out.append(" · kv: ")
    out.append(kv, style="green" if kv == "forwarded" else "bold red")
    for problem in outcome.problems:
        out.append(f"\n✗ {problem}", style="red")
    for note in outcome.notes:
        out.append(f"\n{note}", style="dim")
    return out


class OutcomeMetrics(Static):
    """The metrics of the outcome shown in the answer view (empty before the first answer)."""

    def show(self, outcome: VerifyOutcome | None, waiting: str = "") -> None:
        if outcome is None:
            self.update(Text(waiting, style="dim"))
        else:
            self.update(metrics_text(outcome))

"""The preflight verdicts of the preview: a table, failures first; selecting a row shows its raw output."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import DataTable, Static

from pdwizard.report import CheckResult, Status

_ORDER = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2, Status.SKIP: 3}
_STYLE = {Status.FAIL: "bold red", Status.WARN: "yellow", Status.OK: "green", Status.SKIP: "dim"}
_LABEL = {Status.FAIL: "FAIL", Status.WARN: "WARN", Status.OK: "ok", Status.SKIP: "skip"}


def status_text(status: Status) -> Text:
    return Text(_LABEL[status], style=_STYLE[status])


def preflight_lines(results: list[CheckResult]) -> str:
    """The table as plain text, one verdict a line (what `y` copies)."""
    return "\n".join("\t".join([_LABEL[r.status], r.check, r.where, r.message or r.value or "", r.hint or ""])
                     for r in ordered(results))


def ordered(results: list[CheckResult]) -> list[CheckResult]:
    """Failures first, then warnings, then the rest, each in the order preflight gave them."""
    return sorted(results, key=lambda r: _ORDER[r.status])


class PreflightPane(Vertical):
    """Status, check, where, message and hint per verdict; the selected one's details and raw
    output under the table (the first failure's are shown to begin with)."""

    def __init__(self, results: list[CheckResult], *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.results = ordered(results)

    def compose(self) -> ComposeResult:
        table: DataTable = DataTable(id="pv-preflight-table", cursor_type="row", zebra_stripes=True)
        table.add_columns("status", "check", "where", "message", "fix")
        for i, r in enumerate(self.results):
            cells = (r.check, r.where, r.message or r.value or "", r.hint or "")
            table.add_row(status_text(r.status), *(Text(c) for c in cells), key=str(i))
        yield table
        with VerticalScroll(id="pv-preflight-detail-box"):
            yield Static("", id="pv-preflight-detail")

    def on_mount(self) -> None:
        if not self.results:
            self._detail("preflight did not run: the session has problems (see the Problems tab)")
        elif self.results[0].status is Status.FAIL:
            self._show(0)
        else:
            self._detail("select a row (enter) for its details and raw output")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self._show(int(event.row_key.value or 0))

    def _show(self, index: int) -> None:
        r = self.results[index]
        text = Text.assemble(status_text(r.status), f" {r.check} · {r.where}\n",
                             r.message or r.value or "")
        if r.hint:
            text.append(f"\nfix: {r.hint}", style="italic")
        text.append("\nraw: ", style="bold")
        text.append(r.raw.rstrip() if r.raw else "(no raw output)")
        self._detail(text)

    def _detail(self, text: str | Text) -> None:
        self.query_one("#pv-preflight-detail", Static).update(text if isinstance(text, Text) else Text(text))

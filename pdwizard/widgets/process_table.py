"""The launch's processes, one row each: state (coloured) and elapsed time, from the core's board."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.message import Message
from textual.widgets import DataTable

from pdwizard.deploy.board import ProcessRow

_STATE_STYLE = {"pending": ("·", "dim"), "starting": ("◌", "yellow"), "healthy": ("●", "green"),
                "failed": ("✗", "bold red"), "stopped": ("■", "dim")}
_COLUMNS = ("process", "role", "where", "state", "elapsed", "note")
NOTE_WIDTH = 40
#: Fixed widths: a column sized by its content would change width as the states go by.
_WIDTHS = {"role": 7, "state": 10, "elapsed": 7, "note": NOTE_WIDTH}


def elapsed_text(seconds: float | None) -> str:
    """12s, 3m05s, 1h02m: short enough for a narrow table."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class ProcessTable(DataTable):
    """Rows keyed by process name; `show` redraws only the cells that changed. The process and
    where columns are sized when the rows are added (their text never changes), the others fixed."""

    class Highlighted(Message):
        """The operator moved to the row of process `name` (its log pane may follow)."""

        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        for column in _COLUMNS:
            self.add_column(column, key=column, width=_WIDTHS.get(column))

    def show(self, rows: Sequence[ProcessRow], now: float) -> None:
        """Draw `rows` (elapsed times read at `now`, the app's clock)."""
        names = [r.name for r in rows]
        if [k.value for k in self.rows] != names:
            self.clear()
            for r in rows:
                self.add_row(*self._cells(r, now), key=r.name)
            return
        for r in rows:
            for column, value in zip(_COLUMNS, self._cells(r, now)):
                if self.get_cell(r.name, column) != value:
                    self.update_cell(r.name, column, value)

    @property
    def highlighted(self) -> str | None:
        """The process whose row the cursor is on (None: no rows)."""
        if not self.row_count:
            return None
        return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)

    def select(self, name: str) -> None:
        if name in [k.value for k in self.rows]:
            self.move_cursor(row=self.get_row_index(name))

    @staticmethod
    def _cells(r: ProcessRow, now: float) -> tuple:
        mark, style = _STATE_STYLE.get(r.state, ("?", ""))
        note = r.note if len(r.note) <= NOTE_WIDTH else r.note[:NOTE_WIDTH - 1] + "…"
        return (r.name, r.role, r.where, Text(f"{mark} {r.state}", style=style), elapsed_text(r.elapsed(now)), note)

    @on(DataTable.RowHighlighted)
    def _row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.post_message(self.Highlighted(str(event.row_key.value)))


__all__ = ["ProcessTable", "elapsed_text"]

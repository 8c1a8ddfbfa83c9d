"""A grid of every node's NPUs: one row per node, one cell per NPU, a keyboard cursor.

The grid only shows and reports: a click on a cell posts `NpuGrid.Picked`, moving the
cursor posts `NpuGrid.CursorMoved`; the step decides what picking means (see
pdwizard.topology). Cells are marked by state: an instance's label (P1, D2) coloured by
role, `*` selected, `B` busy, `!` unhealthy, `?` no NPU IP, `·` free; a wide cell spells
the state out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, ScrollableContainer
from textual.content import Content
from textual.message import Message
from textual.widgets import Label, Static

from pdwizard.topology import Cell, CellState, NodeRow

SHORT = {CellState.SELECTED: "*", CellState.BUSY: "B", CellState.UNHEALTHY: "!",
         CellState.NO_IP: "?", CellState.FREE: "·"}
LONG = {CellState.SELECTED: "sel", CellState.BUSY: "busy", CellState.NO_IP: "no IP", CellState.FREE: "free"}
#: From this cell width on, the state is spelled out ("busy" rather than "B").
LONG_FROM = 9


def cell_id(row: int, device: int) -> str:
    """The DOM id of a cell: node by its row (node names may hold '.'), then the device id."""
    return f"npu-{row}-{device}"


class NpuCell(Static):
    """One NPU. Not focusable: the grid holds the focus and the cursor."""

    def __init__(self, cell: Cell, row: int, *, cursor: bool = False) -> None:
        super().__init__(id=cell_id(row, cell.device), classes="npu-cell -cursor" if cursor else "npu-cell")
        self.row = row
        self.cell = cell
        self._apply()

    def set_cell(self, cell: Cell) -> None:
        if cell != self.cell:
            self.cell = cell
            self._apply()

    def _apply(self) -> None:
        for state in CellState:
            self.set_class(self.cell.state is state, f"-{state.value}")
        self.set_class(bool(self.cell.label) and self.cell.warned, "-warned")
        self.tooltip = self.cell.risk
        self.refresh()

    def render(self) -> Content:
        cell = self.cell
        wide = self.size.width >= LONG_FROM
        if cell.label:
            mark = cell.label + ("!" if cell.warned else "")
        elif cell.state is CellState.UNHEALTHY:
            mark = (cell.health or "sick")[:5] if wide else "!"
        else:
            mark = (LONG if wide else SHORT)[cell.state]
        return Content(f"{cell.device:>2} {mark}")

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.post_message(NpuGrid.Picked(self.cell.node, self.cell.device, self.row))


class NpuGrid(ScrollableContainer, can_focus=True):
    """Every node's NPUs; arrows move the cursor, a click picks a cell."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1, 0)", "Up", show=False, tooltip="cursor to the node above"),
        Binding("down", "move(1, 0)", "Down", show=False, tooltip="cursor to the node below"),
        Binding("left", "move(0, -1)", "Left", show=False, tooltip="cursor to the previous NPU"),
        Binding("right", "move(0, 1)", "Right", show=False, tooltip="cursor to the next NPU"),
        Binding("home", "edge(0)", "First", show=False, tooltip="cursor to the node's first NPU"),
        Binding("end", "edge(1)", "Last", show=False, tooltip="cursor to the node's last NPU"),
    ]

    @dataclass
    class Picked(Message):
        """A cell was clicked (the cursor is on it now)."""

        node: str
        device: int
        row: int

    @dataclass
    class CursorMoved(Message):
        """The cursor is on another NPU."""

        node: str
        device: int

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[NodeRow] = []
        self.cursor: tuple[int, int] = (0, 0)   # (row, column) into rows

    def compose(self) -> ComposeResult:
        for r, row in enumerate(self.rows):
            with Horizontal(classes="npu-row", id=f"npu-row-{r}"):
                yield Label(row.node, classes="npu-node")
                if row.note:
                    yield Label(row.note, classes="npu-note")
                for c, cell in enumerate(row.cells):
                    yield NpuCell(cell, r, cursor=(r, c) == self.cursor)

    def show(self, rows: list[NodeRow]) -> None:
        """Draw `rows`: cells change in place; another set of nodes or NPUs recomposes."""
        def layout(rs: list[NodeRow]) -> list:
            return [(r.node, [c.device for c in r.cells], r.note) for r in rs]

        same = layout(rows) == layout(self.rows)
        self.rows = rows
        self.cursor = self._clamp(*self.cursor)
        if same:
            for cell_widget in self.query(NpuCell):
                cell_widget.set_cell(rows[cell_widget.row].cells[self._column(cell_widget)])
            self._mark_cursor()
        else:
            self.refresh(recompose=True)

    def _column(self, widget: NpuCell) -> int:
        return [c.device for c in self.rows[widget.row].cells].index(widget.cell.device)

    @property
    def cursor_cell(self) -> Cell | None:
        """The cell under the cursor (None when no node has NPUs)."""
        r, c = self.cursor
        if r < len(self.rows) and c < len(self.rows[r].cells):
            return self.rows[r].cells[c]
        return None

    def _clamp(self, r: int, c: int) -> tuple[int, int]:
        filled = [i for i, row in enumerate(self.rows) if row.cells]
        if not filled:
            return (0, 0)
        if r not in filled:
            r = min(filled, key=lambda i: abs(i - r))
        return (r, max(0, min(c, len(self.rows[r].cells) - 1)))

    def _mark_cursor(self) -> None:
        cell = self.cursor_cell
        for widget in self.query(NpuCell):
            widget.set_class(cell is not None and widget.row == self.cursor[0] and widget.cell.device == cell.device,
                             "-cursor")

    def move_to(self, row: int, device: int) -> None:
        """Put the cursor on `device` of node row `row`."""
        devices = [c.device for c in self.rows[row].cells]
        self._set_cursor(row, devices.index(device))

    def _set_cursor(self, r: int, c: int) -> None:
        self.cursor = self._clamp(r, c)
        self._mark_cursor()
        cell = self.cursor_cell
        if cell is not None:
            widget = self.query(f"#{cell_id(self.cursor[0], cell.device)}")
            if widget:
                self.scroll_to_widget(widget.first(), animate=False)
            self.post_message(self.CursorMoved(cell.node, cell.device))

    def action_move(self, dr: int, dc: int) -> None:
        r, c = self.cursor
        if dr:
            filled = [i for i, row in enumerate(self.rows) if row.cells]
            later = [i for i in filled if (i > r if dr > 0 else i < r)]
            if not later:
                return
            r = min(later) if dr > 0 else max(later)
        self._set_cursor(r, c + dc)

    def action_edge(self, last: int) -> None:
        r, _ = self.cursor
        self._set_cursor(r, len(self.rows[r].cells) - 1 if last and r < len(self.rows) else 0)

    def on_npu_grid_picked(self, message: Picked) -> None:
        """A click moves the cursor too (the message goes on to the step)."""
        self.move_to(message.row, message.device)

"""The fabric check table (one row per node and per chosen NPU, one column per check) and the
details pane that shows any cell's verdicts: message, value, hint and the raw tool output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rich.console import Group
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Static

from pdwizard.report import CheckResult, Status, worst

#: The columns in order, as check -> (label, what it checks): each NPU's fabric checks first (what
#: the step is about, visible first at 80 columns), then what discovery found about the NPU, then
#: the node-level checks. A check not listed (a node whose whole script failed) gets a column of
#: its own when it shows up.
COLUMNS: dict[str, tuple[str, str]] = {
    "lldp": ("lldp", "the LLDP neighbour (the switch port the NPU is cabled to)"),
    "link": ("link", "the link status (UP expected)"),
    "net_health": ("net", "net_health (the NPU reaches its netdetect address)"),
    "netdetect": ("ndet", "the netdetect address (set expected)"),
    "gateway": ("gw", "the default gateway (set expected)"),
    "tls": ("tls", "the TLS switch (the same on every NPU)"),
    "hccn_conf": ("conf", "/etc/hccn.conf (the live NPU address expected)"),
    "ping": ("ping", "the planned pings from this NPU"),
    "health": ("hlth", "npu-smi health (OK expected)"),
    "free": ("free", "processes holding the NPU (none expected)"),
    "ip": ("ip", "the NPU's IP address (one expected)"),
    "node_ip": ("addr", "the session's node ip (one of the node's own addresses expected)"),
    "nic": ("nic", "the nic (holding the node ip expected)"),
    "versions": ("vers", "driver, CANN, vLLM and vllm-ascend (the same on every node expected)"),
}
WHERE, ALL = "where", "all"
#: How a group of verdicts shows in a cell: its worst status.
MARKS = {Status.OK: ("ok", "green"), Status.WARN: ("WARN", "bold yellow"),
         Status.FAIL: ("FAIL", "bold red"), Status.SKIP: ("skip", "dim")}
PENDING = "…"
#: The details list failures first.
_FIRST = {Status.FAIL: 0, Status.WARN: 1, Status.OK: 2, Status.SKIP: 3}


def mark(results: Sequence[CheckResult], pending: bool = False) -> Text:
    """The cell text: ok / WARN / FAIL (coloured), "…" while the verdict is awaited."""
    if pending:
        return Text(PENDING, style="dim")
    if not results:
        return Text("")
    word, style = MARKS[worst([r.status for r in results])]
    return Text(word, style=style)


def row_key(node: str, device: int | None) -> str:
    """"p1" for a node's own checks, "p1:0" for its NPU 0."""
    return node if device is None else f"{node}:{device}"


def result_key(r: CheckResult) -> tuple:
    return (r.check, r.node, r.device, r.target)


def where(node: str, device: int | None) -> str:
    return f"node {node}" if device is None else f"{node} NPU {device}"


@dataclass
class CellResults:
    """What one cell holds: its verdicts, and whether one is still awaited."""

    results: list[CheckResult] = field(default_factory=list)
    pending: bool = False


class CellGrid(DataTable):
    """A grid of verdict cells: moving the cursor posts `CellChosen` (the details follow it),
    enter or a click posts it to open the details. Subclasses say what a cell holds (`chosen`)."""

    BINDINGS = [Binding("enter", "select_cursor", "Details",
                        tooltip="the verdicts, hint and raw output of the cell under the cursor")]

    @dataclass
    class CellChosen(Message):
        """A cell was highlighted (`open` False) or selected with enter / a click (`open` True)."""

        title: str
        results: list[CheckResult]
        open: bool
        empty: str = ""                               # what to say when there is no verdict
        focused: bool = False                         # the grid had the focus (not a redraw)

    def chosen(self, open_: bool) -> CellGrid.CellChosen | None:
        """The message for the cell under the cursor (None when the grid is empty)."""
        raise NotImplementedError

    def _post_chosen(self, open_: bool) -> None:
        message = self.chosen(open_)
        if message is not None:
            message.focused = self.has_focus
            self.post_message(message)

    def on_resize(self) -> None:
        """Keep the cursor in view when the details pane opens under the grid."""
        self.call_after_refresh(self.move_cursor, row=self.cursor_row, column=self.cursor_column)

    def on_click(self, event: events.Click) -> None:
        """A click on a cell opens its details at once (DataTable selects on a second click only).
        This runs before DataTable moves the cursor, hence `call_later`."""
        meta = event.style.meta
        if meta.get("row", -1) >= 0 and meta.get("column", -1) >= 0:
            self.call_later(self._post_chosen, True)

    def on_data_table_cell_highlighted(self, event: DataTable.CellHighlighted) -> None:
        event.stop()
        self._post_chosen(False)

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self._post_chosen(True)


class CheckTable(CellGrid):
    """Rows are nodes and their chosen NPUs, columns the checks; a cell shows the worst of its
    verdicts (the "all" column: of the whole row). The table never reaches into the details
    pane: it posts `CellChosen` with the verdicts."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="cell", fixed_columns=2, **kwargs)
        self.cells: dict[tuple[str, str], CellResults] = {}
        self.row_places: dict[str, tuple[str, int | None]] = {}

    # ---------------------------------------------------------------- building

    def reset(self, targets: Iterable[tuple[str, list[int]]], pending: bool = True) -> None:
        """Empty rows for every node and chosen NPU ((node, devices) in session order); every
        cell that will hold a verdict shows "…" while `pending`."""
        self.clear(columns=True)
        self.cells.clear()
        self.row_places.clear()
        width = max([len(row_key(n, d)) for n, ds in targets for d in [None, *ds]] + [5])
        self.add_column(Text("where", style="bold"), key=WHERE, width=width)
        self.add_column(Text("all", style="bold"), key=ALL, width=4)
        for check, (label, _) in COLUMNS.items():
            self.add_column(label, key=check, width=4)
        for node, devices in targets:
            self._add_row(node, None, pending)
            for d in devices:
                self._add_row(node, d, pending)

    def _add_row(self, node: str, device: int | None, pending: bool) -> str:
        key = row_key(node, device)
        self.row_places[key] = (node, device)
        mine = [c for c in COLUMNS if (c in _NODE_CHECKS) == (device is None)]
        for check in [ALL, *mine]:
            self.cells[(key, check)] = CellResults(pending=pending)
        cells: list[Text] = []
        for column in self.ordered_columns:
            check = str(column.key.value)
            cell = self.cells.get((key, check))
            cells.append(Text(key, style="bold" if device is None else "") if check == WHERE
                         else mark(cell.results if cell else [], bool(cell and cell.pending)))
        self.add_row(*cells, key=key)
        return key

    def _column(self, check: str) -> None:
        if check not in self.columns:
            self.add_column(check[:10], key=check, default=Text(""))

    # ---------------------------------------------------------------- filling in

    def await_again(self, results: Iterable[CheckResult]) -> None:
        """The cells of these verdicts show "…" until their re-run answers."""
        for r in results:
            for key in ((row_key(r.node, r.device), r.check), (row_key(r.node, r.device), ALL)):
                if key in self.cells:
                    self.cells[key].pending = True
                    self._paint(*key)

    def heard(self, results: Iterable[CheckResult]) -> None:
        """Verdicts as a node answers: each replaces the one it repeats (same check and place)."""
        rows: set[str] = set()
        for r in results:
            cell = self._cell(r)
            cell.results = [x for x in cell.results if result_key(x) != result_key(r)] + [r]
            cell.pending = False
            rows.add(row_key(r.node, r.device))
            self._paint(row_key(r.node, r.device), r.check)
        for row in rows:
            self._refresh_all(row)

    def show(self, results: Iterable[CheckResult]) -> None:
        """Every verdict of the last checks (the truth once a run is over): nothing is awaited."""
        for cell in self.cells.values():
            cell.results, cell.pending = [], False
        for r in results:
            self._cell(r).results.append(r)
        for row in self.row_places:
            for check in self.columns:
                if check.value not in (WHERE, ALL):
                    self._paint(row, str(check.value))
            self._refresh_all(row)

    def _cell(self, r: CheckResult) -> CellResults:
        row = row_key(r.node, r.device)
        if row not in self.row_places:
            self._add_row(r.node, r.device, False)
        self._column(r.check)
        return self.cells.setdefault((row, r.check), CellResults())

    def _refresh_all(self, row: str) -> None:
        checks = [str(c.value) for c in self.columns if c.value not in (WHERE, ALL)]
        mine = [c for c in (self.cells.get((row, check)) for check in checks) if c is not None]
        whole = self.cells.setdefault((row, ALL), CellResults())
        whole.results = [r for c in mine for r in c.results]
        whole.pending = any(c.pending for c in mine)
        self._paint(row, ALL)

    def _paint(self, row: str, check: str) -> None:
        cell = self.cells.get((row, check))
        if cell is not None and check in self.columns:
            self.update_cell(row, check, mark(cell.results, cell.pending))

    # ---------------------------------------------------------------- reading

    def failed_cell(self) -> tuple[int, int] | None:
        """(row, column) of the first failing check cell, for the cursor after a run: a check
        of the NPU itself before a ping (a link down fails every ping to and from it too)."""
        found: list[tuple[bool, int, int]] = []
        for row_index, row in enumerate(self.ordered_rows):
            for col_index, col in enumerate(self.ordered_columns):
                check = str(col.key.value)
                cell = self.cells.get((str(row.key.value), check))
                if check != ALL and cell and any(r.status is Status.FAIL for r in cell.results):
                    found.append((check == "ping", row_index, col_index))
        return min(found)[1:] if found else None

    def chosen(self, open_: bool) -> CellGrid.CellChosen | None:
        if not self.row_count:
            return None
        row, col = self.coordinate_to_cell_key(self.cursor_coordinate)
        key, check = str(row.value), str(col.value)
        node, device = self.row_places[key]
        if check == WHERE:
            check = ALL
        cell = self.cells.get((key, check), CellResults())
        about = "every check of the row" if check == ALL else COLUMNS.get(check, (check, check))[1]
        name = "all" if check == ALL else check
        title = f"{where(node, device)} · {name}: {about}"
        empty = "still checking …" if cell.pending else (
            "not checked here: node checks are in the node's row, NPU checks in the NPU rows"
            if check != ALL else "nothing checked yet")
        return self.CellChosen(title, list(cell.results), open_, empty)


_NODE_CHECKS = frozenset({"node_ip", "nic", "versions"})


class CheckDetails(VerticalScroll):
    """A cell's verdicts, failures first: message, value, hint and the raw output each came from."""

    PLACEHOLDER = "Select a cell (enter or a click) for its verdicts, the hint and the raw tool output."
    #: What the pane shows, as plain text (for reading it back: tests, copying).
    plain = PLACEHOLDER

    def compose(self):
        yield Static(self.PLACEHOLDER, id="check-details-text")

    def show(self, title: str, results: Sequence[CheckResult], empty: str = "") -> None:
        """Show these verdicts under `title` (`empty`: what to say when there are none)."""
        order = sorted(results, key=lambda r: _FIRST[r.status])
        parts: list[Text] = [Text(title, style="bold")] if title else []
        if not order:
            parts.append(Text(empty or "no verdict here", style="dim"))
        for n, r in enumerate(order):
            parts.append(_verdict(r, first=n == 0))
        self.plain = "\n".join(part.plain for part in parts)
        self.query_one("#check-details-text", Static).update(Group(*parts))
        self.scroll_home(animate=False)


def _verdict(r: CheckResult, first: bool) -> Text:
    """One verdict as lines of plain text (the raw output is never read as markup)."""
    word, style = MARKS[r.status]
    out = Text("" if first else "\n")
    out.append(word, style=style)
    out.append(f" {r.check} {where(r.node, r.device)}" + (f" -> {r.target}" if r.target else ""))
    if r.message:
        out.append(f"\n{r.message}")
    if r.value:
        out.append("\nvalue: ", style="dim")
        out.append(r.value)
    if r.hint:
        out.append("\nhint: ", style="bold")
        out.append(r.hint)
    if r.raw:
        out.append("\nraw output:\n", style="dim")
        out.append(r.raw.expandtabs(4), style="italic")
    return out

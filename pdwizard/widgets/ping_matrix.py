"""The ping matrix as a grid: source NPU (rows) x destination NPU (columns)."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text

from pdwizard.fabric import ping_target
from pdwizard.pingplan import Endpoint, PingPlan
from pdwizard.report import CheckResult
from pdwizard.widgets.check_table import CellGrid, mark

SAME_NODE = "NPUs of one node talk over HCCS: they are never pinged"
NOT_PLANNED = 'not in the sampled plan: set [checks] ping = "full" in the session for the whole matrix'


def label(e: Endpoint) -> str:
    return f"{e.node}:{e.device}"


class PingMatrix(CellGrid):
    """One cell per (source, destination) NPU: ok / FAIL for a planned ping, "…" while it is
    awaited, "·" when the (sampled) plan leaves it out, "-" within one node. Moving to or
    selecting a cell posts `CellChosen` with the ping's verdict."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="cell", fixed_columns=1, **kwargs)
        self.endpoints: list[Endpoint] = []
        self.planned: dict[tuple[str, int | None, str], tuple[str, str]] = {}   # ping's place -> cell
        self.verdicts: dict[tuple[str, str], CheckResult] = {}
        self.pending: set[tuple[str, str]] = set()
        self.cells_planned: set[tuple[str, str]] = set()
        self.by_label: dict[str, Endpoint] = {}

    def show(self, plan: PingPlan | None, results: Iterable[CheckResult], pending: bool = False) -> None:
        """The grid of `plan` with these ping verdicts; planned cells without one show "…" while
        `pending` (the pings are running)."""
        self.clear(columns=True)
        self.verdicts.clear()
        self.pending.clear()
        self.planned = {}
        pings = [p for ps in (plan.by_node.values() if plan else []) for p in ps]
        order = list(plan.by_node) if plan else []
        seen = {(e.node, e.device): e for p in pings for e in (p.src, p.dst)}
        self.endpoints = sorted(seen.values(), key=lambda e: (order.index(e.node) if e.node in order else 999, e.device))
        for p in pings:
            self.planned[(p.src.node, p.src.device, ping_target(p))] = (label(p.src), label(p.dst))
        self.cells_planned = set(self.planned.values())
        self.by_label = {label(e): e for e in self.endpoints}
        if pending:
            self.pending = set(self.cells_planned)
        width = max([len(label(e)) for e in self.endpoints] + [4])
        self.add_column(Text("from \\ to", style="bold"), key="src", width=max(width, 9))
        for e in self.endpoints:
            self.add_column(label(e), key=label(e), width=width)
        for src in self.endpoints:
            self.add_row(Text(label(src), style="bold"), *[self._text(src, dst) for dst in self.endpoints],
                         key=label(src))
        self.heard(results)

    def await_again(self, results: Iterable[CheckResult]) -> None:
        for r in results:
            cell = self.planned.get((r.node, r.device, r.target or ""))
            if cell is not None:
                self.pending.add(cell)
                self.update_cell(*cell, Text("…", style="dim"))

    def heard(self, results: Iterable[CheckResult]) -> None:
        """Ping verdicts as they arrive (others are ignored)."""
        for r in results:
            cell = self.planned.get((r.node, r.device, r.target or "")) if r.check == "ping" else None
            if cell is None:
                continue
            self.verdicts[cell] = r
            self.pending.discard(cell)
            self.update_cell(*cell, mark([r]))

    def _text(self, src: Endpoint, dst: Endpoint) -> Text:
        cell = (label(src), label(dst))
        if src.node == dst.node:
            return Text("-", style="dim")
        if cell in self.pending:
            return Text("…", style="dim")
        if cell not in self.cells_planned:
            return Text("·", style="dim")
        return mark([self.verdicts[cell]] if cell in self.verdicts else [])

    def chosen(self, open_: bool) -> CellGrid.CellChosen | None:
        if not self.row_count:
            return None
        row, col = self.coordinate_to_cell_key(self.cursor_coordinate)
        src, dst = str(row.value), str(col.value)
        if dst == "src":
            return self.CellChosen(f"pings from {src}", [r for (s, _), r in self.verdicts.items() if s == src],
                                   open_, "no ping from this NPU")
        title = f"ping {src} -> {dst}"
        result = self.verdicts.get((src, dst))
        if self.by_label[src].node == self.by_label[dst].node:
            empty = SAME_NODE
        elif (src, dst) in self.pending:
            empty = "still pinging …"
        elif (src, dst) not in self.cells_planned:
            empty = NOT_PLANNED
        else:
            empty = "no verdict"
        return self.CellChosen(title, [result] if result else [], open_, empty)

"""The instances being built on the topology step: one row each, the port editable.

The list shows and reports: an edited port posts `InstanceList.PortEdited`; the step
writes it into the session and hands back the problems to show beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label

from pdwizard.topology import InstanceRow

COLUMNS = ("", "role", "node", "NPUs", "TP", "port", "kv_port")


class InstanceList(Vertical):
    """A header, one row per instance (label, role, node, NPUs, TP, port, kv_port), and the
    first port problem under them."""

    @dataclass
    class PortEdited(Message):
        index: int
        text: str

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.rows: list[InstanceRow] = []
        self.errors: dict[int, str] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="inst-row inst-header"):
            for n, title in enumerate(COLUMNS):
                yield Label(title, classes=f"inst-col inst-col-{n}")
        if not self.rows:
            yield Label("none yet: select NPUs on the grid, then p (prefill) or d (decode)", classes="inst-empty")
        for row in self.rows:
            with Horizontal(classes=f"inst-row -{row.role}", id=f"inst-row-{row.index}"):
                for n, text in enumerate(self._cells(row)):
                    yield Label(text, classes=f"inst-col inst-col-{n}")
                invalid = " -invalid" if row.index in self.errors else ""
                yield Input(str(row.port), id=f"port-{row.index}", compact=True, classes="inst-port" + invalid,
                            tooltip=f"the vLLM API port of {row.label} (--port)")
                yield Label(row.kv_port, classes="inst-col inst-col-6")
        yield Label(self._error_text(), id="port-error", classes="field-error")

    @staticmethod
    def _cells(row: InstanceRow) -> list[str]:
        return [row.label, row.role, row.node, ",".join(map(str, row.devices)), str(row.tp)]

    def show(self, rows: list[InstanceRow], errors: dict[int, str]) -> None:
        """Draw `rows`; `errors`: instance index -> its port problem. Ports being typed stay
        as typed; other instances recompose the list."""
        def shape(rs: list[InstanceRow]) -> list:
            return [(r.label, r.role, r.node, r.devices, r.kv_port) for r in rs]

        same = shape(rows) == shape(self.rows)
        self.rows, self.errors = rows, errors
        if not same:
            self.refresh(recompose=True)
            return
        for row in rows:
            port = self.query_one(f"#port-{row.index}", Input)
            if not port.has_focus and port.value != str(row.port):
                port.value = str(row.port)
        self._show_errors()

    def _show_errors(self) -> None:
        for port in self.query(".inst-port").results(Input):
            index = int(str(port.id).rsplit("-", 1)[1])
            port.set_class(index in self.errors, "-invalid")
        self.query_one("#port-error", Label).update(self._error_text())

    def _error_text(self) -> str:
        first = min(self.errors.items(), default=None)
        return f"{self.rows[first[0]].label} port: {first[1]}" if first else ""

    @on(Input.Changed, ".inst-port")
    def _port_changed(self, event: Input.Changed) -> None:
        event.stop()
        index = int(str(event.input.id).rsplit("-", 1)[1])
        if index < len(self.rows) and event.value != str(self.rows[index].port):
            self.post_message(self.PortEdited(index, event.value))

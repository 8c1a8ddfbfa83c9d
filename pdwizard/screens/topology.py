"""Step 3, Topology: prefill and decode instances chosen on a grid of every node's NPUs.

The screen shows and asks; pdwizard.topology decides (what a device is, what may be
chosen, ports, the xPyD summary, what blocks Next). A busy, unhealthy or IP-less NPU is
only chosen after the operator says so in a dialog.
"""

from __future__ import annotations

from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from pdwizard.screens.step import Step
from pdwizard.topology import Outcome, TopologyEditor
from pdwizard.widgets.npu_grid import NpuGrid
from pdwizard.widgets.topology_confirm import ConfirmRiskScreen
from pdwizard.widgets.topology_instances import InstanceList

LEGEND = "[b]P[/b]/[b]D[/b] instance  [b]*[/b] selected  [b]B[/b] busy  [b]![/b] unhealthy  [b]?[/b] no IP"
#: Shown beside the instances where there is room (wide terminals).
HOWTO = (
    "[b]Keyboard[/b]  arrows move the cursor, space selects an NPU (one node at a time), p makes the "
    "selection a prefill instance, d a decode instance, x removes the instance under the cursor, "
    "esc clears the selection.\n"
    "[b]Mouse[/b]  click NPUs, then Prefill or Decode; click an instance's NPU, then Remove.\n"
    "[b]TP[/b]  an instance's tensor-parallel size is its number of NPUs.\n"
    "[b]Ports[/b]  a new instance takes the first free port on its node from 13700 (the guide's "
    "--port); edit it in the list.\n"
    "[b]Risky NPUs[/b]  busy, unhealthy or IP-less NPUs are chosen only after you confirm."
)


#: From this step width on, the grid and the instances sit side by side (the wide grid is
#: about 100 columns, the instance list about 60).
SIDE_BY_SIDE = 160


class TopologyStep(Step):
    STEP_ID = "topology"
    TITLE = "Topology"
    HELP = "Choose prefill and decode instances on the NPU grid"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "pick", "Select", tooltip="select or unselect the NPU under the grid cursor (arrows move it)"),
        Binding("p", "make('prefill')", "Prefill", tooltip="make the selected NPUs a prefill instance"),
        Binding("d", "make('decode')", "Decode", tooltip="make the selected NPUs a decode instance"),
        Binding("x,delete", "remove", "Remove", tooltip="remove the instance under the grid cursor"),
        Binding("escape", "clear", "Clear", tooltip="clear the selection"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.editor: TopologyEditor | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="topo-body"):
            with Vertical(id="topo-left"):
                yield NpuGrid(id="npu-grid")
                yield Static("", id="topo-detail")
                yield Static("", id="topo-selection")
                with Horizontal(id="topo-actions"):
                    yield Button("Prefill", id="make-prefill", compact=True, classes="-prefill",
                                 tooltip="make the selected NPUs a prefill instance (p)")
                    yield Button("Decode", id="make-decode", compact=True, classes="-decode",
                                 tooltip="make the selected NPUs a decode instance (d)")
                    yield Button("Remove", id="remove-instance", compact=True,
                                 tooltip="remove the instance under the grid cursor (x)")
                yield Static(LEGEND, id="topo-legend")
            with Vertical(id="topo-right"):
                yield Static("", id="topo-summary")
                yield InstanceList(id="instance-list")
                yield Static(HOWTO, id="topo-howto")

    @property
    def topo(self) -> TopologyEditor:
        """The editor, bound to the wizard (which outlives a replaced session)."""
        if self.editor is None or self.editor.wizard is not self.wizard:
            self.editor = TopologyEditor(self.wizard)
        return self.editor

    def on_resize(self) -> None:
        self.set_class(self.size.width >= SIDE_BY_SIDE, "-side")

    def entered(self) -> None:
        self.topo.prune()
        self._refresh()

    # ---------------------------------------------------------------- drawing

    def _refresh(self) -> None:
        topo = self.topo
        grid = self.query_one(NpuGrid)
        grid.show(topo.rows())
        instances = topo.instance_rows()
        self.query_one(InstanceList).show(instances, topo.port_problems())
        self.query_one("#topo-summary", Static).update(f"[b]{topo.summary()}[/b]")
        self.query_one("#topo-selection", Static).update(topo.selection_text())
        self._describe()
        self.blocker = topo.blocker()

    def _describe(self) -> None:
        cell = self.query_one(NpuGrid).cursor_cell
        text = self.topo.describe(cell.node, cell.device) if cell is not None else "no NPU discovered yet"
        self.query_one("#topo-detail", Static).update(text)

    def _tell(self, outcome: Outcome) -> None:
        if outcome.message:
            self.notify(outcome.message, severity="information" if outcome.ok else "warning")
        self._refresh()

    # ---------------------------------------------------------------- choosing

    def _pick(self, node: str, device: int) -> None:
        outcome = self.topo.pick(node, device)
        if outcome.confirm is None:
            if not outcome.ok:
                self._tell(outcome)
            else:
                self._refresh()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._tell(self.topo.accept(node, device))
            else:
                self.notify(f"{node} NPU {device} not chosen", severity="information")

        self.app.push_screen(ConfirmRiskScreen(f"{node} NPU {device}", outcome.confirm), answered)

    def action_pick(self) -> None:
        cell = self.query_one(NpuGrid).cursor_cell
        if cell is None:
            self.notify("no NPU to select: discover the nodes first (Nodes step)", severity="warning")
            return
        self._pick(cell.node, cell.device)

    def action_make(self, role: str) -> None:
        self._tell(self.topo.make(role))

    def action_remove(self) -> None:
        cell = self.query_one(NpuGrid).cursor_cell
        if cell is None:
            return
        self._tell(self.topo.remove_at(cell.node, cell.device))

    def action_clear(self) -> None:
        self.topo.selection.clear()
        self._refresh()

    # ---------------------------------------------------------------- events

    @on(NpuGrid.Picked)
    def _clicked(self, event: NpuGrid.Picked) -> None:
        self._pick(event.node, event.device)

    @on(NpuGrid.CursorMoved)
    def _cursor_moved(self) -> None:
        self._describe()

    @on(Button.Pressed, "#make-prefill")
    def _prefill_pressed(self) -> None:
        self.action_make("prefill")

    @on(Button.Pressed, "#make-decode")
    def _decode_pressed(self) -> None:
        self.action_make("decode")

    @on(Button.Pressed, "#remove-instance")
    def _remove_pressed(self) -> None:
        self.action_remove()

    @on(InstanceList.PortEdited)
    def _port_edited(self, event: InstanceList.PortEdited) -> None:
        self.topo.set_port(event.index, event.text)
        self._refresh()

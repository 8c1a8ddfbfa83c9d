"""One node up close: how SSH reaches it, what discovery found, and its node ip / nic."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.markup import escape
from textual.message import Message
from textual.widgets import Button, DataTable, Label, Select, Static

from pdwizard.report import NodeFacts, NpuFacts


@dataclass
class NodeView:
    """What the detail pane shows of one node (the step builds it from the wizard's state)."""

    name: str
    reach: str                                  # "root@127.0.1.1:2222 via bastion"
    status: str
    facts: NodeFacts | None = None
    problem: tuple[str, str | None] | None = None    # why it is not connected or discovered, the fix
    choices: list[tuple[str, str | None]] | None = None
    address: tuple[str | None, str | None, bool] = (None, None, True)
    wanted: str = ""                            # the node ip (and nic) the session names


class NodeDetail(VerticalScroll):
    """Shows a NodeView; says which node ip / nic the operator picked with AddressPicked."""

    @dataclass
    class AddressPicked(Message):
        """The operator picked (or confirmed) `ip` on `nic` as node `node`'s ip."""

        node: str
        ip: str
        nic: str | None

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view: NodeView | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="node-head")
        with Horizontal(id="node-ip-row"):
            yield Label("node ip", id="node-ip-label")
            yield Select([], prompt="(discover first)", allow_blank=True, id="node-ip", compact=True,
                         tooltip="the node's address for HCCL_IF_IP and the ranktable, and the NIC holding it")
            yield Button("Confirm", id="node-ip-confirm", compact=True, variant="warning",
                         tooltip="use the proposed node ip and nic (i)")
        yield Static(id="node-note")
        yield DataTable(id="npu-table", show_cursor=False, zebra_stripes=True)
        yield Static(id="node-nets")

    def on_mount(self) -> None:
        table = self.query_one("#npu-table", DataTable)
        table.can_focus = False
        table.add_columns("NPU", "health", "HBM used", "NPU IP", "held by pids")

    def show(self, view: NodeView | None) -> None:
        """Draw `view` (None: no node yet)."""
        self.view = view
        head = self.query_one("#node-head", Static)
        if view is None:
            head.update("[dim]No node yet: press [b]a[/b] to add one.[/dim]")
            self._clear()
            return
        facts = view.facts
        head.update(_head(view))
        self._show_address(view)
        self._show_note(view)
        table = self.query_one("#npu-table", DataTable)
        table.clear()
        table.display = bool(facts and facts.npus)
        for npu in facts.npus if facts else []:
            table.add_row(*_npu_row(npu))
        nets = self.query_one("#node-nets", Static)
        nets.update(_nets(facts) if facts else "")
        nets.display = facts is not None

    def _clear(self) -> None:
        self.query_one("#node-ip-row").display = False
        self.query_one("#node-note", Static).display = False
        self.query_one("#npu-table", DataTable).display = False
        self.query_one("#node-nets", Static).display = False

    def _show_address(self, view: NodeView) -> None:
        row = self.query_one("#node-ip-row")
        row.display = bool(view.choices)
        if not view.choices:
            return
        select = self.query_one("#node-ip", Select)
        ip, nic, kept = view.address
        with self.prevent(Select.Changed):
            select.set_options([(f"{a} on {n}" if n else a, (a, n)) for a, n in view.choices])
            select.value = (ip, nic) if (ip, nic) in view.choices else Select.NULL
        self.query_one("#node-ip-confirm", Button).display = not kept

    def _show_note(self, view: NodeView) -> None:
        note = self.query_one("#node-note", Static)
        ip, nic, kept = view.address
        if view.problem is not None:
            message, hint = view.problem
            text = f"[$error]{escape(message)}[/]" + (f"\n[b]fix:[/b] {escape(hint)}" if hint else "")
        elif view.facts is not None and not kept:
            text = (f"[$warning]The session's node ip {escape(view.wanted)} is not on this node: "
                    f"{escape(str(ip))} on {escape(str(nic))} is proposed. Pick one, or confirm it (i).[/]")
        else:
            text = ""
        note.update(text)
        note.display = bool(text)

    @on(Select.Changed, "#node-ip")
    def _picked(self, event: Select.Changed) -> None:
        event.stop()
        if self.view is not None and isinstance(event.value, tuple):
            self.post_message(self.AddressPicked(self.view.name, *event.value))

    @on(Button.Pressed, "#node-ip-confirm")
    def _confirm(self, event: Button.Pressed) -> None:
        event.stop()
        value = self.query_one("#node-ip", Select).value
        if self.view is not None and isinstance(value, tuple):
            self.post_message(self.AddressPicked(self.view.name, *value))


def _head(view: NodeView) -> str:
    facts = view.facts
    parts = [f"[b]{escape(view.name)}[/b] {escape(view.reach)}  [dim]{escape(view.status)}[/dim]"]
    if facts is not None:
        chips = sorted({n.name for n in facts.npus if n.name})
        npus = f"{len(facts.npus)} x {'/'.join(chips) or 'NPU'}" if facts.npus else "no NPU found"
        found = [f"host {facts.hostname}" if facts.hostname else "", facts.soc or "SoC ?", npus,
                 f"driver {facts.driver_version}" if facts.driver_version else "",
                 f"CANN {facts.cann_version}" if facts.cann_version else ""]
        parts.append(escape(" · ".join(p for p in found if p)))
        if facts.packages:
            parts.append(escape(" · ".join(f"{k} {v}" for k, v in sorted(facts.packages.items()))))
    return "\n".join(parts)


def _npu_row(npu: NpuFacts) -> list[Text | str]:
    health = npu.health or "?"
    style = "green" if health.upper() == "OK" else ("yellow" if health.upper() == "WARNING" else "bold red")
    if npu.hbm_total_mb:
        hbm = f"{(npu.hbm_used_mb or 0) / 1024:.1f}/{npu.hbm_total_mb / 1024:.0f} GB"
    else:
        hbm = "?"
    pids = Text(", ".join(map(str, npu.pids)), style="bold red") if npu.pids else Text("free", style="dim")
    ip = Text(npu.ip) if npu.ip else Text("no ip", style="bold red")
    return [str(npu.device), Text(health, style=style), hbm, ip, pids]


def _nets(facts: NodeFacts) -> str:
    nics = ", ".join(f"{escape(nic)} {escape(' '.join(addrs) or '-')}" for nic, addrs in facts.nics.items())
    return (f"[b]NICs[/b] {nics or '[dim]none read[/dim]'} · [b]hostname -I[/b] "
            f"{escape(' '.join(facts.addresses)) or '[dim]none[/dim]'}")

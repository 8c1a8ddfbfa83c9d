"""Step 2, Nodes: the servers, how SSH reaches them, what discovery found, their node ip.

Every node connects and is discovered in parallel in one worker, each with a live status;
an unknown host key is asked about (HostKeyScreen) and recorded only on the operator's word.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.widgets import Button, DataTable, Label

from pdwizard.errors import PdwError, RemoteError
from pdwizard.messages import NodeProgress
from pdwizard.report import Status
from pdwizard.screens.hostkey import HostKeyScreen
from pdwizard.screens.node_form import NodeFormScreen, RemoveNodeScreen
from pdwizard.screens.progress import PostingProgress
from pdwizard.screens.step import Step
from pdwizard.widgets.node_detail import NodeDetail, NodeView

#: A failed connection's kind as the status column says it.
FAILED = {"host_key_unknown": "key unknown", "host_key_changed": "KEY CHANGED", "auth": "auth failed",
          "unreachable": "unreachable", "refused": "refused", "timeout": "timeout",
          "disconnected": "disconnected", "jump": "jump failed"}
#: The node table's columns (label, key); wide terminals show the versions too.
COLUMNS = [("node", "name"), ("host", "host"), ("status", "status"), ("SoC", "soc"), ("NPU", "npus"),
           ("node ip", "ip"), ("nic", "nic")]
WIDE_COLUMNS = [("hostname", "hostname"), ("driver", "driver"), ("CANN", "cann"), ("vllm-ascend", "vllm_ascend")]
_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", None: "yellow"}


class NodesStep(Step):
    STEP_ID = "nodes"
    TITLE = "Nodes"
    HELP = "Add the servers, connect over SSH, discover their NPUs"

    BINDINGS = [
        Binding("a", "add", "Add", tooltip="add a node: name, host, user, port, key, jump host"),
        Binding("e", "edit", "Edit", tooltip="edit the highlighted node: how SSH reaches it"),
        Binding("x,delete", "remove", "Remove", tooltip="remove the highlighted node (asks first)"),
        Binding("c", "connect", "Connect all", tooltip="connect to every node again, in parallel, and discover it"),
        Binding("i", "confirm_ip", "Confirm ip", tooltip="use the proposed node ip and nic of the highlighted node"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[str, tuple[str, Status | None]] = {}   # the last progress line per node
        self.runs = 0                                            # connect workers under way
        self.wide = False
        self.asking: str | None = None                          # the node whose host key is asked about

    def compose(self) -> ComposeResult:
        with Container(id="nodes-body"):
            yield DataTable(id="nodes-table", cursor_type="row")
            yield NodeDetail(id="node-detail")
        with Horizontal(id="nodes-bar"):
            yield Button("Add", id="nodes-add", compact=True, tooltip="add a node (a)")
            yield Button("Edit", id="nodes-edit", compact=True, tooltip="edit the highlighted node (e)")
            yield Button("Remove", id="nodes-remove", compact=True, tooltip="remove the highlighted node (x)")
            yield Button("Connect all", id="nodes-connect", compact=True, variant="primary",
                         tooltip="connect to every node again and discover it (c)")
            yield Label("", id="nodes-summary")

    def on_mount(self) -> None:
        self._columns()

    def _is_wide(self) -> bool:
        from pdwizard.screens.wizard_screen import WIDE_COLUMNS  # (imports the steps)

        return self.app.size.width >= WIDE_COLUMNS

    def on_resize(self) -> None:
        if self.wide != self._is_wide():
            self._columns()
            self._rebuild()

    def _columns(self) -> None:
        """The table's columns for the terminal's width (the versions only when wide)."""
        self.wide = self._is_wide()
        table = self.query_one("#nodes-table", DataTable)
        table.clear(columns=True)
        for label, key in COLUMNS + (WIDE_COLUMNS if self.wide else []):
            table.add_column(label, key=key)

    # ---------------------------------------------------------------- showing

    def entered(self) -> None:
        self._rebuild()
        if self._pending() and not self.runs:
            self.connect_nodes()
        self._refresh_blocker()

    def _names(self) -> list[str]:
        return [str(n.get("name")) for n in self.wizard.data.get("nodes", [])]

    def _node(self, name: str) -> dict[str, Any]:
        return next(n for n in self.wizard.data.get("nodes", []) if str(n.get("name")) == name)

    def _pending(self) -> list[str]:
        return [n for n in self._names() if n not in self.wizard.facts]

    def _highlighted(self) -> str | None:
        table = self.query_one("#nodes-table", DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _rebuild(self, select: str | None = None) -> None:
        """Every row again from the session (nodes may have been added, renamed or removed)."""
        table = self.query_one("#nodes-table", DataTable)
        keep = select or self._highlighted()
        table.clear()
        for name in self._names():
            table.add_row(*self._cells(name), key=name)
        names = self._names()
        if keep in names:
            table.move_cursor(row=names.index(keep))
        self._show_detail()

    def _cells(self, name: str) -> list[str | Text]:
        node, facts = self._node(name), self.wizard.facts.get(name)
        label, status = self._status(name)
        ip, nic, kept = self.wizard.node_address(name) if facts else (node.get("ip"), node.get("nic"), True)
        mark = "" if kept else "?"
        cells: list[str | Text] = [
            name, str(node.get("host", "")), Text(label, style=_STYLE[status]),
            (facts.soc or "?") if facts else "", str(len(facts.npus)) if facts else "",
            Text(f"{ip or ''}{mark}", style="" if kept else "bold yellow"),
            Text(f"{nic or ''}{mark if nic else ''}", style="" if kept else "bold yellow")]
        if self.wide:
            found = [facts.hostname, facts.driver_version, facts.cann_version,
                     facts.packages.get("vllm_ascend")] if facts else []
            cells += [v or "" for v in found or [""] * len(WIDE_COLUMNS)]
        return cells

    def _status(self, name: str) -> tuple[str, Status | None]:
        """The live progress while connecting; otherwise what the wizard knows of the node."""
        w = self.wizard
        if self.runs and name in self.live:
            return self.live[name]
        if name in w.facts:
            return "discovered", Status.OK
        if name not in w.connect_errors:
            return "not connected", None
        err = w.connect_errors[name]
        if err is not None:
            return FAILED.get(err.kind, err.kind), Status.FAIL
        return self.live.get(name, ("connected", None))

    def _update_row(self, name: str) -> None:
        table = self.query_one("#nodes-table", DataTable)
        if name not in self._names() or name not in [k.value for k in table.rows]:
            return
        for (_, key), value in zip(COLUMNS + WIDE_COLUMNS, self._cells(name)):
            table.update_cell(name, key, value, update_width=True)
        if name == self._highlighted():
            self._show_detail()

    def _show_detail(self) -> None:
        name = self._highlighted()
        self.query_one(NodeDetail).show(self._view(name) if name else None)
        self._summarise()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """"Confirm ip" only shows (in the footer) for a node whose ip is a proposal."""
        if action != "confirm_ip":
            return True
        name = self._highlighted()
        return name is not None and name in self.wizard.facts and not self.wizard.node_address(name)[2]

    def _view(self, name: str) -> NodeView:
        w = self.wizard
        facts = w.facts.get(name)
        err = w.connect_errors.get(name)
        problem = (err.message, err.hint) if err is not None else self._discovery_problem(name)
        node = self._node(name)
        wanted = f"{node.get('ip') or node.get('host')}" + (f" on {node['nic']}" if node.get("nic") else "")
        return NodeView(name=name, reach=self._reach(name), status=self._status(name)[0], facts=facts,
                        problem=problem, choices=w.address_choices(name) if facts else None,
                        address=w.node_address(name) if facts else (None, None, True), wanted=wanted)

    def _reach(self, name: str) -> str:
        """How SSH reaches the node, as the session says (user@host:port, via a bastion)."""
        node = self._node(name)
        problems = self.wizard.connect_problems()
        if problems:
            return f"{node.get('host')}  ({'; '.join(problems)})"
        target = next(t for t in self.wizard.targets() if t.name == name)
        user = f"{target.user}@" if target.user else ""
        via = f" via {target.jump.display}" if target.jump else ""
        return f"{user}{node.get('host')}:{node.get('port') or target.port}{via}"

    def _discovery_problem(self, name: str) -> tuple[str, str | None] | None:
        """Why the last discovery of a connected node failed (from the wizard's report)."""
        steps = [s for s in self.wizard.report.steps if s.name == "discovery"]
        failed = [r for s in steps[-1:] for r in s.results if r.node == name and r.status is Status.FAIL]
        return (failed[-1].message or failed[-1].value or "discovery failed", failed[-1].hint) if failed else None

    def _summarise(self) -> None:
        names = self._names()
        found = sum(1 for n in names if n in self.wizard.facts)
        failed = sum(1 for n in names if self.wizard.connect_errors.get(n) is not None)
        text = f"{found}/{len(names)} discovered" + (f", {failed} failed" if failed else "")
        self.query_one("#nodes-summary", Label).update(text + ("  connecting..." if self.runs else ""))

    def _refresh_blocker(self) -> None:
        if self.asking:
            self.blocker = f"node {self.asking}: trust its host key?"
            return
        if self.runs:
            done = sum(1 for n in self._names() if self.live.get(n, ("",))[0] == "discovered")
            self.blocker = f"connecting: {done} of {len(self._names())} discovered"
            return
        blockers = self.wizard.node_blockers()
        self.blocker = blockers[0] if blockers else None

    def _refresh(self) -> None:
        for name in self._names():
            self._update_row(name)
        self._show_detail()
        self._refresh_blocker()

    # ---------------------------------------------------------------- connecting

    @work(exclusive=True, group="nodes-connect")
    async def connect_nodes(self, names: list[str] | None = None) -> None:
        """Connect and discover `names` (default: every node not discovered yet) in parallel,
        then ask about each unknown host key."""
        w = self.wizard
        names = self._pending() if names is None else names
        if not names or w.connect_problems():
            self._refresh()
            return
        self.runs += 1
        for name in names:
            self.live[name] = ("waiting", None)
        self._refresh()
        progress = PostingProgress(self)
        try:
            await w.connect(progress, names)
            await w.discover(progress, names)
            await self._ask_host_keys(names, progress)
        except PdwError as exc:
            self.notify(str(exc), title="connecting failed", severity="error", timeout=10)
        finally:
            self.runs -= 1
        self._refresh()  # not when cancelled: the worker that replaced this one refreshes, or the app exits

    async def _ask_host_keys(self, names: list[str], progress: PostingProgress) -> None:
        """One question per unknown host key (a node behind a bastion may need two: the
        bastion's, then its own); only a yes records it, then the node connects."""
        w = self.wizard
        recorded = False
        for name in names:
            if recorded and w.untrusted_key(name) is not None:
                # a key recorded meanwhile (a bastion shared with an earlier node) may have been its only
                # unknown one: connect again, so that a question shows the key that is unknown now
                if not (await w.connect(progress, [name]))[name]:
                    await w.discover(progress, [name])
                    continue
            asked: set[str | None] = set()
            while name in self._names() and (err := w.untrusted_key(name)) is not None \
                    and err.fingerprint not in asked:
                asked.add(err.fingerprint)
                if not await self._ask(name, err):
                    self.notify(f"node {name}: host key rejected, nothing recorded", severity="warning")
                    break
                try:
                    line = await w.trust_and_connect(name, progress)
                except RemoteError as exc:
                    self.notify(str(exc), title=f"node {name}: key not recorded", severity="error", timeout=15)
                    break
                recorded = True
                self.notify(f"node {name}: recorded in {w.known_hosts_file(name)}: {line.split()[0]}")

    async def _ask(self, name: str, err: RemoteError) -> bool:
        """Show the key (the node highlighted behind the question); True when trusted."""
        self._rebuild(select=name)
        screen = HostKeyScreen(name, str(self._node(name).get("host")), err, self.wizard.known_hosts_file(name))
        self.asking = name
        self._refresh_blocker()
        try:
            return bool(await self.app.push_screen_wait(screen))
        finally:
            self.asking = None

    def on_node_progress(self, message: NodeProgress) -> None:
        """The core's live per-node line: shown in the status column as it arrives."""
        message.stop()
        text = message.text
        if message.status is Status.FAIL:
            kind = text.rsplit(": ", 1)[-1]
            label = "no discovery" if text.startswith("discovery") else FAILED.get(kind, kind)
        else:
            label = text.split(" (")[0].split(" ")[0]
        self.live[message.node] = (label, Status.OK if label == "discovered" else message.status)
        self._update_row(message.node)
        self._refresh_blocker()
        self._summarise()

    # ---------------------------------------------------------------- the node ip

    @on(NodeDetail.AddressPicked)
    def _address_picked(self, message: NodeDetail.AddressPicked) -> None:
        self._pick(message.node, message.ip, message.nic)

    def _pick(self, name: str, ip: str, nic: str | None) -> None:
        if self.wizard.pick_address(name, ip, nic):
            self.notify(f"node {name}: node ip {ip}" + (f" on {nic}" if nic else ""))
        self._update_row(name)
        self._refresh_blocker()

    def action_confirm_ip(self) -> None:
        name = self._highlighted()
        if name is None or name not in self.wizard.facts:
            self.notify("discover the node first", severity="warning")
            return
        ip, nic, _ = self.wizard.node_address(name)
        if ip is None:
            self.notify(f"node {name}: discovery found no IPv4 address", severity="error")
            return
        self._pick(name, ip, nic)

    # ---------------------------------------------------------------- editing

    def action_add(self) -> None:
        names = set(self._names())
        name = next(f"node{k}" for k in range(len(names) + 1, len(names) + 1000) if f"node{k}" not in names)
        self._edit({"name": name}, None)

    def action_edit(self) -> None:
        name = self._highlighted()
        if name is not None:
            self._edit(self._node(name), self._names().index(name))

    def _edit(self, node: dict[str, Any], index: int | None) -> None:
        def saved(entry: dict[str, Any] | None) -> None:
            if entry is None or (index is not None and entry == node):
                return
            self.wizard.put_node(entry, index)
            self._rebuild(select=str(entry.get("name")))
            self.connect_nodes()
            self._refresh_blocker()

        self.app.push_screen(NodeFormScreen(node, index, dict(self.wizard.data.get("ssh") or {})), saved)

    def action_remove(self) -> None:
        name = self._highlighted()
        if name is None:
            return
        placed = sum(1 for i in self.wizard.data.get("instances", []) if i.get("node") == name)

        def answered(remove: bool | None) -> None:
            if remove:
                self.wizard.remove_node(name)
                self.live.pop(name, None)
                self._rebuild()
                self._refresh_blocker()
                self.notify(f"node {name} removed")

        self.app.push_screen(RemoveNodeScreen(name, placed), answered)

    def action_connect(self) -> None:
        self.live.clear()
        self.connect_nodes(self._names())

    @on(DataTable.RowHighlighted, "#nodes-table")
    def _row_highlighted(self) -> None:
        self._show_detail()

    @on(Button.Pressed, "#nodes-add")
    def _add_pressed(self) -> None:
        self.action_add()

    @on(Button.Pressed, "#nodes-edit")
    def _edit_pressed(self) -> None:
        self.action_edit()

    @on(Button.Pressed, "#nodes-remove")
    def _remove_pressed(self) -> None:
        self.action_remove()

    @on(Button.Pressed, "#nodes-connect")
    def _connect_pressed(self) -> None:
        self.action_connect()

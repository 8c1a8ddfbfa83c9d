"""Add or edit one node (how SSH reaches it), and confirm removing one."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

#: The fields the form edits: (session key, label). ip and nic are picked after discovery.
FIELDS = [("name", "name"), ("host", "host"), ("user", "user"), ("port", "port"),
          ("identity_file", "key"), ("jump", "jump host")]
#: Typed in the jump field: connect directly even when [ssh] names a bastion (jump = "").
DIRECT = "-"


class NodeFormScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with the node entry to store, or None (cancelled). Each field is checked as
    it is typed (the core's validation, naming the key and how to fix it); Save stays disabled
    while any field has a problem. Never asks for a password: SSH uses keys or the agent."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel", tooltip="close without saving")]

    def __init__(self, node: dict[str, Any] | None, index: int | None, ssh: dict[str, Any]) -> None:
        super().__init__()
        self.original = dict(node or {})
        self.index = index
        self.ssh = ssh
        self.touched: set[str] = set()

    def compose(self) -> ComposeResult:
        title = f"Edit node {escape(str(self.original.get('name')))}" if self.index is not None else "Add a node"
        with Vertical(id="node-form", classes="dialog"):
            yield Static(f"[b]{title}[/b]  [dim]SSH keys or the agent: no password is asked or stored[/dim]")
            for key, label in FIELDS:
                with Horizontal(classes="row"):
                    yield Label(label, classes="field-label")
                    yield Input(self._value(key), placeholder=self._placeholder(key), id=f"node-{key}",
                                compact=True)
                yield Label("", id=f"node-{key}-error", classes="field-error")
            yield Static("[dim]The node ip and nic are picked after discovery.[/dim]", id="node-form-note")
            with Horizontal(classes="buttons"):
                yield Button("Save", id="save", variant="primary", compact=True,
                             tooltip="store the node and connect to it (enter)")
                yield Button("Cancel", id="cancel", compact=True, tooltip="close without saving (escape)")

    def on_mount(self) -> None:
        self._check()

    def _value(self, key: str) -> str:
        value = self.original.get(key)
        if key == "jump" and value == "":
            return DIRECT
        return "" if value is None else str(value)

    def _placeholder(self, key: str) -> str:
        default = self.ssh.get(key)
        if key == "host":
            return "IP address or host name SSH connects to"
        if key == "name":
            return "p1"
        if key == "port":
            return f"{default or 22} (from [ssh])"
        if key == "identity_file":
            return f"{default} (from [ssh])" if default else "the agent and the default keys"
        if key == "jump":
            return f"{default} (from [ssh]; {DIRECT} connects directly)" if default else "none: direct, or [user@]host[:port]"
        return f"{default} (from [ssh])" if default else "the local user name"

    def entry(self) -> dict[str, Any]:
        """The node entry the fields describe (the keys the form does not edit are kept)."""
        node = {k: v for k, v in self.original.items() if k not in dict(FIELDS)}
        for key, _ in FIELDS:
            text = self.query_one(f"#node-{key}", Input).value.strip()
            if key == "jump" and text == DIRECT:
                node[key] = ""
            elif text:
                node[key] = int(text) if key == "port" and text.isdigit() else text
        return node

    def _check(self, reveal: bool = False) -> bool:
        """Show the problems of the fields typed in (all of them when `reveal`); True if none."""
        problems = self.app.wizard.node_entry_problems(self.entry(), self.index)  # type: ignore[attr-defined]
        by_key: dict[str, str] = {}
        for p in problems:
            key = (p.key or "").split(".", 1)[-1]
            by_key.setdefault(key, p.message.split(": ", 1)[-1] + (f"  fix: {p.hint}" if p.hint else ""))
        for key, label in FIELDS:
            error = self.query_one(f"#node-{key}-error", Label)
            text = by_key.get(key, "") if reveal or key in self.touched else ""
            error.update(f"{label}: {escape(text)}" if text else "")
            error.display = bool(text)
        self.query_one("#save", Button).disabled = bool(problems)
        return not problems

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        if event.input.id and event.value != self._value(event.input.id.removeprefix("node-")):
            self.touched.add(event.input.id.removeprefix("node-"))
        self._check()

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        if self._check(reveal=True):
            self.dismiss(self.entry())

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class RemoveNodeScreen(ModalScreen[bool]):
    """Removing a node also removes the instances placed on it: say so, and ask."""

    BINDINGS = [Binding("escape", "dismiss(False)", "Cancel", tooltip="keep the node")]

    def __init__(self, node: str, instances: int) -> None:
        super().__init__()
        self.node, self.instances = node, instances

    def compose(self) -> ComposeResult:
        also = f" and the {self.instances} instance(s) placed on it" if self.instances else ""
        with Vertical(id="remove-node-dialog", classes="dialog"):
            yield Static(f"Remove node [b]{escape(self.node)}[/b]{also} from the session?")
            with Horizontal(classes="buttons"):
                yield Button("Remove", id="remove", variant="error", compact=True)
                yield Button("Keep", id="keep", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "remove")

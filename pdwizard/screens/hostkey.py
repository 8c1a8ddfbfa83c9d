"""An unknown host key: show its fingerprint, and record it only if the operator says so."""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from pdwizard.errors import RemoteError


class HostKeyScreen(ModalScreen[bool]):
    """Dismisses with True (trust and record the key) or False (reject: nothing is written).

    Reject has the focus: trusting a key is a decision, never the default of a keystroke."""

    BINDINGS = [
        Binding("escape", "answer(False)", "Reject", tooltip="reject the key: nothing is recorded"),
        Binding("t", "answer(True)", "Trust", tooltip="trust the key shown and record it in known_hosts"),
    ]

    def __init__(self, node: str, host: str, error: RemoteError, known_hosts: Path) -> None:
        super().__init__()
        self.node, self.host, self.error, self.known_hosts = node, host, error, known_hosts

    def compose(self) -> ComposeResult:
        line = self.error.known_hosts_line or ""
        algorithm = line.split()[1] if len(line.split()) > 2 else "key"
        where = line.split()[0] if line else self.host
        via = "" if self.error.node == self.node else f", the key of its bastion {escape(self.error.node)}"
        with Vertical(id="hostkey-dialog", classes="dialog"):
            yield Static(f"[b]Unknown host key[/b]: node [b]{escape(self.node)}[/b]{via}", id="hostkey-title")
            yield Static(f"[dim]host[/dim]         {escape(where)}\n"
                         f"[dim]{escape(algorithm)}[/dim]  [b]{escape(self.error.fingerprint or '?')}[/b]\n"
                         f"[dim]known_hosts[/dim]  {escape(str(self.known_hosts))}", id="hostkey-facts")
            yield Static("Compare the fingerprint with the node's own (on the node: "
                         "[b]ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub[/b]) before trusting it. "
                         "Trusting records the line in known_hosts; a changed key is never offered.",
                         id="hostkey-advice")
            with Horizontal(classes="buttons"):
                yield Button("Trust and record", id="trust", variant="warning", compact=True,
                             tooltip="record this key in known_hosts, then connect (t)")
                yield Button("Reject", id="reject", variant="primary", compact=True,
                             tooltip="record nothing; the node stays not connected (escape)")

    def on_mount(self) -> None:
        self.query_one("#reject", Button).focus()

    def action_answer(self, trust: bool) -> None:
        self.dismiss(trust)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "trust")

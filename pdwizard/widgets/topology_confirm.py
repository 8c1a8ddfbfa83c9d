"""Asking before a busy, unhealthy or IP-less NPU is chosen: never silently."""

from __future__ import annotations

from typing import ClassVar

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmRiskScreen(ModalScreen[bool]):
    """Dismisses with True when the operator chooses the device anyway."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "dismiss(True)", "Choose anyway", tooltip="choose the NPU knowing the risk"),
        Binding("n,escape", "dismiss(False)", "Cancel", tooltip="leave the NPU unchosen"),
    ]

    def __init__(self, what: str, risk: str) -> None:
        super().__init__()
        self.what = what
        self.risk = risk

    def compose(self) -> ComposeResult:
        with Vertical(id="risk-dialog", classes="dialog"):
            yield Static(f"[b]{escape(self.what)}[/b]: {escape(self.risk)}", id="risk-text")
            yield Static("An instance there may fail to start, or take memory another job is using. "
                         "Choose it anyway?")
            with Horizontal(classes="buttons"):
                yield Button("Choose anyway (y)", id="risk-yes", variant="warning", compact=True)
                yield Button("Cancel (n)", id="risk-no", variant="primary", compact=True)

    def on_mount(self) -> None:
        self.query_one("#risk-no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "risk-yes")

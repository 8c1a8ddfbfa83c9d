"""Quitting while the deployment runs: stop it, or leave it running."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str]):
    """Dismisses with "stop", "leave" or "cancel"."""

    BINDINGS = [Binding("escape", "dismiss('cancel')", "Cancel")]

    def __init__(self, simulated: bool) -> None:
        super().__init__()
        self.simulated = simulated

    def compose(self) -> ComposeResult:
        leave = ("Leave running: with the SIMULATED cluster it still dies as pdwizard exits."
                 if self.simulated else
                 "Leave running: stop it later with pdwizard --replay SESSION --stop.")
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static("[b]The deployment is still running.[/b]")
            yield Static(leave)
            with Horizontal(classes="buttons"):
                yield Button("Stop all and quit", id="stop", variant="error", compact=True)
                yield Button("Leave running", id="leave", compact=True)
                yield Button("Cancel", id="cancel", variant="primary", compact=True)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

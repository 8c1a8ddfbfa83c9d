"""Step: Fabric checks. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class ChecksStep(Step):
    STEP_ID = "checks"
    TITLE = "Fabric checks"
    HELP = "Links, health, TLS and the ping matrix of the chosen NPUs"

    def compose(self) -> ComposeResult:
        yield Static("Fabric checks")

    def entered(self) -> None:
        self.blocker = None

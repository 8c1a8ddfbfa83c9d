"""Step: Launch. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class LaunchStep(Step):
    STEP_ID = "launch"
    TITLE = "Launch"
    HELP = "Start prefill, decode and the proxy; watch their logs"

    def compose(self) -> ComposeResult:
        yield Static("Launch")

    def entered(self) -> None:
        self.blocker = None

"""Step: Nodes. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class NodesStep(Step):
    STEP_ID = "nodes"
    TITLE = "Nodes"
    HELP = "Add the servers, connect over SSH, discover their NPUs"

    def compose(self) -> ComposeResult:
        yield Static("Nodes")

    def entered(self) -> None:
        self.blocker = None

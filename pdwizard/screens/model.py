"""Step: Model and stack. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class ModelStep(Step):
    STEP_ID = "model"
    TITLE = "Model and stack"
    HELP = "The model, its lengths, the version profile and the proxy"

    def compose(self) -> ComposeResult:
        yield Static("Model and stack")

    def entered(self) -> None:
        self.blocker = None

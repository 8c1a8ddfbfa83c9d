"""Step: Preview. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class PreviewStep(Step):
    STEP_ID = "preview"
    TITLE = "Preview"
    HELP = "The ranktable and every command, before anything starts"

    def compose(self) -> ComposeResult:
        yield Static("Preview")

    def entered(self) -> None:
        self.blocker = None

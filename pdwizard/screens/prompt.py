"""Step: Test. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class PromptStep(Step):
    STEP_ID = "test"
    TITLE = "Test"
    HELP = "Send prompts through the proxy and see who served them"

    def compose(self) -> ComposeResult:
        yield Static("Test")

    def entered(self) -> None:
        self.blocker = None

"""Step: Topology. (skeleton: filled in by its owner)"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from pdwizard.screens.step import Step


class TopologyStep(Step):
    STEP_ID = "topology"
    TITLE = "Topology"
    HELP = "Choose prefill and decode instances on the NPU grid"

    def compose(self) -> ComposeResult:
        yield Static("Topology")

    def entered(self) -> None:
        self.blocker = None

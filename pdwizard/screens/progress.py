"""The core's Progress interface, turned into messages to a widget."""

from __future__ import annotations

from textual.widget import Widget

from pdwizard.messages import NodeProgress, ProgressSaid
from pdwizard.remote.pool import CommandResult
from pdwizard.report import Status


class PostingProgress:
    """Tells `target` what the flow reports, as messages (the flow runs in a worker)."""

    def __init__(self, target: Widget) -> None:
        self.target = target

    def begin(self, nodes: list[str]) -> None:
        pass

    def node(self, node: str, text: str, status: Status | None = None) -> None:
        self.target.post_message(NodeProgress(node, text, status))

    def say(self, text: str) -> None:
        self.target.post_message(ProgressSaid(text))

    def command(self, result: CommandResult) -> None:
        pass  # the command log hears every command from the pool itself

    def end(self) -> None:
        pass

"""Back / Next with the reason Next is blocked, under every step."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Label


class NavBar(Horizontal):
    """The wizard screen handles the buttons' presses (ids "back" and "next")."""

    def compose(self) -> ComposeResult:
        yield Button("< Back", id="back", compact=True)
        yield Label("", id="blocker", markup=False)  # blockers quote keys like [model]
        yield Button("Next >", id="next", variant="primary", compact=True)

    def show(self, blocker: str | None, first: bool, last: bool) -> None:
        """Say what blocks Next (or that nothing does) and enable the buttons accordingly."""
        label = self.query_one("#blocker", Label)
        label.update(f"Next: {blocker}" if blocker else ("" if last else "ready: Next (ctrl+n) goes on"))
        label.set_class(bool(blocker), "-blocked")
        self.query_one("#back", Button).disabled = first
        self.query_one("#next", Button).disabled = bool(blocker) or last

"""One labelled field of the model step, with its problem shown under it as the operator types."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Label, Switch

from pdwizard.errors import InputError


def problem_text(problem: InputError) -> str:
    """A problem without the file and key it is shown beside: "what is wrong · fix: how"."""
    message = problem.message
    if problem.key and f"{problem.key}: " in message:
        message = message.split(f"{problem.key}: ", 1)[1]
    return f"{message} · fix: {problem.hint}" if problem.hint else message


class FieldRow(Vertical):
    """A label, the field that edits session key `key`, its help under it (on wide terminals),
    and a line for that key's problem (hidden while there is none). A switch says on or off
    in words too, so the state reads without colour."""

    def __init__(self, key: str, label: str, field: Widget, help: str) -> None:
        super().__init__(classes="field-row")
        self.key = key
        self._label = label
        self._field = field
        self._help = help

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label(self._label, classes="field-label")
            yield self._field
            if isinstance(self._field, Switch):
                yield Label("", classes="switch-state")
        yield Label(self._help, classes="field-help", markup=False)
        yield Label("", classes="field-error", markup=False)

    def on_mount(self) -> None:
        self.show_problem(None)
        if isinstance(self._field, Switch):
            self.watch(self._field, "value", self._switch_state)

    def _switch_state(self, value: bool) -> None:
        self.query_one(".switch-state", Label).update("on" if value else "off")

    def show_problem(self, problem: InputError | None) -> None:
        """Show this key's first problem, or clear it."""
        error = self.query_one(".field-error", Label)
        error.update(problem_text(problem) if problem else "")
        error.display = problem is not None
        self.set_class(problem is not None, "-invalid")

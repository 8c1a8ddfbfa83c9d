"""The step list, always visible: where you are, what is done, what is still blocked."""

from __future__ import annotations

from textual.widgets import OptionList
from textual.widgets.option_list import Option

from pdwizard.messages import GoToStep


class StepList(OptionList):
    """One line per step: number, title and a mark (current, done, blocked). Selecting one
    asks the wizard screen to go there (it decides whether that is allowed)."""

    def __init__(self, steps: list[tuple[str, str]], **kwargs) -> None:
        self.steps = steps
        self.marks: dict[str, str] = {sid: " " for sid, _ in steps}
        self.current_step = steps[0][0]
        super().__init__(*self._step_options(), **kwargs)

    def _step_options(self) -> list[Option]:
        out = []
        for n, (sid, title) in enumerate(self.steps, 1):
            pointer = ">" if sid == self.current_step else " "
            out.append(Option(f"{pointer}{n} {title} {self.marks[sid]}", id=sid))
        return out

    def show(self, current: str, marks: dict[str, str]) -> None:
        """Redraw with `current` highlighted and each step's mark."""
        self.current_step = current
        self.marks.update(marks)
        self.clear_options()
        self.add_options(self._step_options())
        self.highlighted = [sid for sid, _ in self.steps].index(current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.post_message(GoToStep(event.option.id))

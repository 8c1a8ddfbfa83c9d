"""The base of every wizard step: a container that says what blocks Next."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual.containers import Vertical
from textual.reactive import reactive

from pdwizard.messages import StepBlocker

if TYPE_CHECKING:
    from pdwizard.wizard import Wizard


class Step(Vertical):
    """One step of the wizard. Subclasses set STEP_ID, TITLE and `blocker`.

    `blocker` is the reason Next is refused, shown beside the Next button; None lets the
    operator go on. `entered()` runs each time the step is shown (start work there, in a
    worker); `leaving()` when the operator moves on with Next.
    """

    STEP_ID: ClassVar[str] = ""
    TITLE: ClassVar[str] = ""
    #: One line shown under the step's title: what the step is for.
    HELP: ClassVar[str] = ""

    blocker: reactive[str | None] = reactive("not ready", init=False)

    def __init__(self) -> None:
        super().__init__(id=self.STEP_ID, classes="step")

    @property
    def wizard(self) -> Wizard:
        return self.app.wizard  # type: ignore[attr-defined]

    def watch_blocker(self, value: str | None) -> None:
        self.post_message(StepBlocker(self.STEP_ID, value))

    def entered(self) -> None:
        """Called each time the step is shown."""

    def leaving(self) -> None:
        """Called when the operator goes on with Next (the step may save what it edited)."""

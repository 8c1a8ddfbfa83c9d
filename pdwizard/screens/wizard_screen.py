"""The wizard's one main screen: the step list, the current step, Back / Next, the command log."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Header, Static

from pdwizard.messages import CommandRan, GoToStep, StepBlocker
from pdwizard.screens.step import Step
from pdwizard.screens.steps import STEPS
from pdwizard.widgets.command_log import CommandLog
from pdwizard.widgets.nav_bar import NavBar
from pdwizard.widgets.step_list import StepList

#: From this terminal width on, steps lay out side by side (class "-wide" on the screen).
WIDE_COLUMNS = 140


class WizardScreen(Screen):
    """Steps live in a ContentSwitcher, so going Back keeps what each step holds (its log
    panes keep tailing). Next is refused while the current step names a blocker."""

    BINDINGS = [
        Binding("ctrl+n", "next", "Next", priority=True, tooltip="go on to the next step (when nothing blocks it)"),
        Binding("ctrl+b", "back", "Back", priority=True, tooltip="go back one step"),
        Binding("ctrl+l", "toggle_log", "Commands", priority=True,
                tooltip="show or hide the log of every remote command"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[Step] = [cls() for cls in STEPS]
        self.blockers: dict[str, str | None] = {s.STEP_ID: "not visited yet" for s in self.steps}
        self.index = 0
        self.visited: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="body"):
            yield StepList([(s.STEP_ID, s.TITLE) for s in self.steps], id="step-list")
            with Vertical(id="main"):
                yield Static("", id="step-title")
                with ContentSwitcher(initial=self.steps[0].STEP_ID, id="steps"):
                    yield from self.steps
                yield NavBar(id="nav")
        yield CommandLog(id="command-log", classes="-hidden")
        yield Footer()

    @property
    def current(self) -> Step:
        return self.steps[self.index]

    def on_mount(self) -> None:
        self._show(0)

    def on_resize(self) -> None:
        self.set_class(self.size.width >= WIDE_COLUMNS, "-wide")

    # ---------------------------------------------------------------- moving between steps

    def _show(self, index: int) -> None:
        self.index = index
        step = self.current
        self.query_one("#steps", ContentSwitcher).current = step.STEP_ID
        title = f"{index + 1}/{len(self.steps)}  {step.TITLE}"
        self.query_one("#step-title", Static).update(f"[b]{title}[/b]  [dim]{step.HELP}[/dim]")
        self.blockers[step.STEP_ID] = step.blocker
        self.visited.add(step.STEP_ID)
        step.entered()
        self._refresh_nav()
        self.call_after_refresh(self._focus_step)

    def _focus_step(self) -> None:
        first = next((w for w in self.current.query("*") if w.focusable), None)
        if first is not None:
            first.focus()

    def _refresh_nav(self) -> None:
        blocker = self.current.blocker
        self.query_one(NavBar).show(blocker, first=self.index == 0, last=self.index == len(self.steps) - 1)
        marks = {}
        for i, s in enumerate(self.steps):
            done = i < self.index and s.STEP_ID in self.visited
            marks[s.STEP_ID] = (" " if not done else "✓" if self.blockers.get(s.STEP_ID) is None else "!")
        self.query_one(StepList).show(self.current.STEP_ID, marks)

    def action_next(self) -> None:
        if self.current.blocker:
            self.notify(f"Next is blocked: {self.current.blocker}", severity="warning")
            return
        if self.index < len(self.steps) - 1:
            self.current.leaving()
            self._show(self.index + 1)

    def action_back(self) -> None:
        if self.index > 0:
            self._show(self.index - 1)

    def go_to(self, step_id: str) -> None:
        """Show a step: any earlier one, or a later one when every step before it allows Next."""
        target = next(i for i, s in enumerate(self.steps) if s.STEP_ID == step_id)
        for i in range(self.index, target):
            if self.steps[i].blocker:
                self.notify(f"{self.steps[i].TITLE} blocks: {self.steps[i].blocker}", severity="warning")
                self._show(i)
                return
            self.steps[i].leaving()
        self._show(target)

    def action_toggle_log(self) -> None:
        self.query_one(CommandLog).toggle_class("-hidden")

    @on(Button.Pressed, "#next")
    def _next_pressed(self) -> None:
        self.action_next()

    @on(Button.Pressed, "#back")
    def _back_pressed(self) -> None:
        self.action_back()

    def on_step_blocker(self, message: StepBlocker) -> None:
        self.blockers[message.step_id] = message.blocker
        if message.step_id == self.current.STEP_ID:
            self._refresh_nav()

    def on_go_to_step(self, message: GoToStep) -> None:
        if message.step_id != self.current.STEP_ID:
            self.go_to(message.step_id)

    def on_command_ran(self, message: CommandRan) -> None:
        self.query_one(CommandLog).add(message.result)

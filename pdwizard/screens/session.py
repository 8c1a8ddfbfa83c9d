"""Step 1, Session: a new session, a session file, or a recent one."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from rich.markup import escape

from pdwizard.errors import PdwError
from pdwizard.recent import recent_sessions, remember
from pdwizard.screens.step import Step


class SessionStep(Step):
    STEP_ID = "session"
    TITLE = "Session"
    HELP = "Start a new session, open a session file, or pick a recent one"

    def compose(self) -> ComposeResult:
        yield Static(id="session-summary")
        with Horizontal(classes="row"):
            yield Label("Name", classes="field-label")
            yield Input(id="session-name", placeholder="qwen3-1p2d", compact=True)
        yield Label("", id="session-name-error", classes="field-error")
        with Horizontal(classes="row"):
            yield Label("Open file", classes="field-label")
            yield Input(id="open-path", placeholder="path/to/session.toml", compact=True)
            yield Button("Open", id="open", compact=True)
            yield Button("New", id="new", compact=True)
        yield Label("Recent sessions", classes="section")
        yield OptionList(id="recent")

    def entered(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        w = self.wizard
        where = f"from {escape(str(w.source))}" if w.source else "not saved yet"
        sim = "  [b reverse] SIMULATED [/] the built-in demo cluster: no real NPU is touched" if w.sim_spec else ""
        nodes = len(w.data.get("nodes", []))
        inst = w.data.get("instances", [])
        self.query_one("#session-summary", Static).update(
            f"Session [b]{escape(w.name)}[/b] ({where}): {nodes} node(s), {len(inst)} instance(s){sim}")
        name = self.query_one("#session-name", Input)
        if name.value != w.name:
            name.value = w.name
        recent = self.query_one("#recent", OptionList)
        recent.clear_options()
        recent.add_options([Option(str(p), id=str(p)) for p in recent_sessions()] or
                           [Option("(none yet: sessions you open or export are listed here)", disabled=True)])
        self._check_name(w.name)

    def _check_name(self, value: str) -> None:
        problems = [p for p in self.wizard.problems("name")]
        error = self.query_one("#session-name-error", Label)
        error.update(f"name: {escape(problems[0].message.split(': ', 1)[-1])}" if problems else "")
        self.blocker = "give the session a valid name" if problems else None

    @on(Input.Changed, "#session-name")
    def _name_changed(self, event: Input.Changed) -> None:
        self.wizard.data["name"] = event.value
        self._check_name(event.value)

    @on(Button.Pressed, "#open")
    @on(Input.Submitted, "#open-path")
    def _open_pressed(self) -> None:
        path = self.query_one("#open-path", Input).value.strip()
        if path:
            self.open_session(Path(path).expanduser())

    @on(OptionList.OptionSelected, "#recent")
    def _recent_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self.open_session(Path(event.option.id))

    @on(Button.Pressed, "#new")
    def _new_pressed(self) -> None:
        self._replace(None, None)

    def open_session(self, path: Path) -> None:
        from pdwizard.wizard import Wizard

        try:
            opened = Wizard.open(path)
        except PdwError as exc:
            self.notify(str(exc), title="cannot open the session", severity="error", timeout=10)
            return
        remember(path)
        self._replace(opened.data, path)

    @work(exclusive=True, group="session")
    async def _replace(self, data: dict | None, source: Path | None) -> None:
        try:
            await self.wizard.replace(data, source)
        except PdwError as exc:
            self.notify(str(exc), severity="error")
            return
        self._refresh()
        self.notify(f"session {self.wizard.name}: " + (f"opened {source}" if source else "new"))

"""The Textual wizard: `pdwizard` (and `pdwizard --demo` on a terminal).

The app holds one `Wizard` (the Textual-free core) and one `WizardScreen`; steps read and
change the session through `app.wizard` and run every SSH or HTTP call in a worker.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from pdwizard.messages import CommandRan
from pdwizard.remote.pool import CommandResult
from pdwizard.screens.export import ExportScreen
from pdwizard.screens.help import HelpScreen
from pdwizard.screens.quit import QuitScreen
from pdwizard.screens.wizard_screen import WizardScreen
from pdwizard.wizard import Wizard

ASSETS = Path(__file__).parent / "assets"
DARK, LIGHT = "textual-dark", "textual-light"


class PdWizardApp(App[int]):
    """The wizard. `clock` (seconds, monotonic) drives every elapsed-time display; tests
    freeze it so screenshots do not depend on how fast the machine is."""

    TITLE = "pdwizard"
    CSS_PATH = [ASSETS / "app.tcss", *sorted(p for p in ASSETS.glob("*.tcss") if p.name != "app.tcss")]
    BINDINGS = [
        Binding("f1", "help", "Help", tooltip="every key of the wizard"),
        Binding("question_mark", "help", "Help", show=False, tooltip="every key (outside text fields)"),
        Binding("ctrl+e", "export", "Export", priority=True,
                tooltip="export the session as TOML (shown before it is written)"),
        Binding("ctrl+t", "toggle_theme", "Theme", show=False, tooltip="switch between the dark and light theme"),
        Binding("ctrl+q", "quit", "Quit", priority=True,
                tooltip="quit (asks whether to stop a running deployment)"),
    ]

    def __init__(self, wizard: Wizard, *, clock=None) -> None:
        super().__init__()
        self.wizard = wizard
        if clock is not None:
            self.clock = clock
        self.theme = DARK
        self.sub_title = self._sub_title()

    def clock(self) -> float:  # replaced per instance in tests
        import time

        return time.monotonic()

    def _sub_title(self) -> str:
        sim = "SIMULATED cluster · " if self.wizard.simulated else ""
        return f"{sim}session {self.wizard.name}"

    async def on_mount(self) -> None:
        self.wizard.on_command = self._command_ran
        await self.wizard.start()
        await self.push_screen(WizardScreen())

    async def on_unmount(self) -> None:
        """Close the connections and stop the simulated cluster inside the app's own loop."""
        await self.wizard.close()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Headless (tests, screenshots): a steady text cursor, so screenshots do not depend
        on when the blink timer last fired."""
        if self.is_headless and hasattr(event.widget, "cursor_blink"):
            event.widget.cursor_blink = False

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """Notifications carry the core's messages (keys such as `[model]`, paths, log lines):
        always shown as plain text, never read as markup (which would eat or reject them)."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=False)

    def _command_ran(self, result: CommandResult) -> None:
        self.screen.post_message(CommandRan(result))

    def refresh_title(self) -> None:
        """Steps call this when the session name or its simulated state changed."""
        self.sub_title = self._sub_title()

    # ---------------------------------------------------------------- actions

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT if self.theme == DARK else DARK

    def action_export(self) -> None:
        if not self.wizard.data.get("nodes"):
            self.notify("add nodes first: the session is exported from the Topology step on",
                        severity="warning")
            return
        self.push_screen(ExportScreen())

    async def action_quit(self) -> None:
        if not self.wizard.running:
            self.exit(0)
            return
        self.push_screen(QuitScreen(self.wizard.simulated), self._quit_answer)

    def _quit_answer(self, answer: str | None) -> None:
        if answer == "leave":
            self.exit(0)
        elif answer == "stop":
            self._stop_and_quit()

    @work(exclusive=True, group="quit")
    async def _stop_and_quit(self) -> None:
        self.notify("stopping every process of the session ...")
        report = await self.wizard.stop()
        if not report.ok:
            self.notify("the stop left processes: see the launch step", severity="error", timeout=15)
            return
        self.exit(0)

    def wizard_screen(self) -> WizardScreen | None:
        return next((s for s in self.screen_stack if isinstance(s, WizardScreen)), None)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The command palette: the wizard's actions by name, then Textual's own."""
        main = self.wizard_screen()
        if main is not None:
            yield SystemCommand("Next step", "go on to the next step", main.action_next)
            yield SystemCommand("Previous step", "go back one step", main.action_back)
            for n, step in enumerate(main.steps, 1):
                yield SystemCommand(f"Go to step {n}: {step.TITLE}", step.HELP,
                                    lambda sid=step.STEP_ID: main.go_to(sid))
            step = main.current
            for binding in step.BINDINGS:
                if isinstance(binding, Binding) and binding.description:
                    yield SystemCommand(f"{step.TITLE}: {binding.description}",
                                        binding.tooltip or binding.description,
                                        lambda s=step, a=binding.action: self.call_later(s.run_action, a))
            yield SystemCommand("Toggle the command log", "every remote command with node, exit and duration",
                                main.action_toggle_log)
        yield SystemCommand("Export the session", "TOML, shown before it is written", self.action_export)
        yield SystemCommand("Toggle light / dark theme", "switch the colour theme", self.action_toggle_theme)
        yield SystemCommand("Help: every key", "the keys of every step", self.action_help)
        yield SystemCommand("Quit", "asks first while a deployment runs", self.action_quit)
        yield from super().get_system_commands(screen)

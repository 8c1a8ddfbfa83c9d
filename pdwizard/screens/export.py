"""Export the session as TOML: shown first, then written atomically where the operator says."""

from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from pdwizard.errors import PdwError
from pdwizard.recent import remember
from pdwizard.session import SessionError


class ExportScreen(ModalScreen[Path | None]):
    """The TOML exactly as it will be written; Save writes it (temp file, fsync, rename). An
    incomplete session is offered as a draft: what it lacks heads the file, `--open` resumes it."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]
    AUTO_FOCUS = "#export-path"  # enter saves where it says

    def compose(self) -> ComposeResult:
        wizard = self.app.wizard  # type: ignore[attr-defined]
        try:
            text, problems = wizard.export_text(), []
        except SessionError as exc:
            text, problems = wizard.draft_text(), exc.problems
        self.draft = bool(problems)
        default = wizard.source or Path.cwd() / f"{wizard.name}.toml"
        with Vertical(id="export-dialog", classes="dialog"):
            yield Static("[b]Export the session[/b]  (this is the file that will be written)")
            with VerticalScroll(id="export-preview"):
                if problems:
                    yield Static("The session is not complete: --replay refuses it until these are fixed. "
                                 "Save it as a draft and carry on later with pdwizard --open FILE.\n" +
                                 "\n".join(f"  - {p}" for p in problems), id="export-problems", markup=False)
                yield Static(Syntax(text, "toml", line_numbers=False, word_wrap=True), id="export-toml")
            with Horizontal(classes="row"):
                yield Label("File", classes="field-label")
                yield Input(str(default), id="export-path", compact=True)
            with Horizontal(classes="buttons"):
                yield Button("Save draft" if problems else "Save", id="save", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#save")
    @on(Input.Submitted, "#export-path")
    def _save(self) -> None:
        path = Path(self.query_one("#export-path", Input).value.strip()).expanduser()
        wizard = self.app.wizard  # type: ignore[attr-defined]
        try:
            written = wizard.export_draft(path) if self.draft else wizard.export(path)
        except (PdwError, OSError) as exc:
            self.notify(str(exc), title="not written", severity="error", timeout=10)
            return
        remember(written)
        self.notify(f"{'draft' if self.draft else 'session'} written to {written}")
        self.dismiss(written)

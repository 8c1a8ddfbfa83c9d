"""The help screen (? or F1): every key of the wizard, from the same binding tables it runs."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from rich.table import Table


def _rows(bindings) -> list[tuple[str, str]]:
    out = []
    for b in bindings:
        if isinstance(b, Binding):
            key, desc = b.key, b.tooltip or b.description
        else:
            key, desc = b[0], b[-1]
        out.append((key.replace("ctrl+", "^"), desc))
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        from pdwizard.screens.steps import STEPS
        from pdwizard.screens.wizard_screen import WizardScreen

        table = Table(box=None, expand=True, show_header=False, pad_edge=False)
        table.add_column("key", style="bold", no_wrap=True, width=14)
        table.add_column("what it does")
        sections = [("Everywhere", list(self.app.BINDINGS) + list(WizardScreen.BINDINGS))]
        sections += [(f"{n}. {s.TITLE}", list(s.BINDINGS)) for n, s in enumerate(STEPS, 1) if s.BINDINGS]
        for title, bindings in sections:
            table.add_row(f"[reverse] {title} [/]", "")
            for key, desc in _rows(bindings):
                table.add_row(key, desc)
        table.add_row("", "")
        table.add_row("^p", "command palette: every wizard action by name")
        table.add_row("tab", "next field or pane;  shift+tab the previous one")
        with VerticalScroll(id="help-body"):
            yield Static("[b]pdwizard keys[/b]  (escape closes)", id="help-title")
            yield Static(table)

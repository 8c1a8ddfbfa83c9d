"""The preview in tabs: the ranktable, every instance's script, the proxy's, and preflight."""

from __future__ import annotations

import json
import re

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from pdwizard.report import Status
from pdwizard.widgets.preview_preflight import PreflightPane, preflight_lines

RANKTABLE, PREFLIGHT, PROBLEMS = "pv-ranktable", "pv-preflight", "pv-problems"


def script_pane_id(name: str) -> str:
    """The tab id of a script ("p1-prefill-0.sh" -> "pv-script-p1-prefill-0")."""
    return "pv-script-" + re.sub(r"[^A-Za-z0-9_-]", "_", name.removesuffix(".sh"))


def script_title(name: str) -> str:
    return "Proxy" if name == "proxy.sh" else name.removesuffix(".sh")


class PreviewTabs(Vertical):
    """Shows one `Preview` (pdwizard.wizard): what would be written and run, nothing editable.
    `visible()` is what the step copies: the shown tab's name and its text."""

    def __init__(self, preview, *, id: str | None = None) -> None:  # preview: pdwizard.wizard.Preview
        super().__init__(id=id)
        self.preview = preview
        art = preview.artifacts
        self.texts: dict[str, tuple[str, str | None]] = {
            RANKTABLE: ("the ranktable", art.ranktable if art else None),
            PREFLIGHT: ("the preflight results", preflight_lines(preview.preflight) or None),
            PROBLEMS: ("the problems", "\n".join(str(e) for e in preview.errors) or None),
        }
        for name, text in preview.scripts.items():
            self.texts[script_pane_id(name)] = (name, text)
        self._code: list[tuple[Static, str, str]] = []    # (widget, text, lexer): re-coloured with the theme

    def compose(self) -> ComposeResult:
        with TabbedContent(initial=self._initial(), id="pv-tabs"):
            if self.preview.errors:
                with TabPane("Problems", id=PROBLEMS):
                    yield VerticalScroll(Static(Text(self.texts[PROBLEMS][1] or ""), classes="pv-problems"))
            with TabPane("Ranktable", id=RANKTABLE), Horizontal(id="pv-ranktable-panes"):
                yield VerticalScroll(self._ranktable(), id="pv-ranktable-json")
                yield self._devices()
            with TabPane(self._preflight_title(), id=PREFLIGHT):
                yield PreflightPane(self.preview.preflight)
            for name in self.preview.scripts:
                with TabPane(script_title(name), id=script_pane_id(name)):
                    yield VerticalScroll(self._syntax(self.preview.scripts[name], "bash"))

    def on_mount(self) -> None:
        self.watch(self.app, "theme", self._recolour, init=False)

    def _initial(self) -> str:
        if self.preview.errors:
            return PROBLEMS
        if any(r.status is Status.FAIL for r in self.preview.preflight):
            return PREFLIGHT
        return RANKTABLE

    def _preflight_title(self) -> str:
        failed = sum(r.status is Status.FAIL for r in self.preview.preflight)
        return f"Preflight ✗{failed}" if failed else "Preflight ✓"

    def _ranktable(self) -> Static:
        art = self.preview.artifacts
        if art is None:
            return Static(Text("nothing rendered: see the Problems tab"), classes="pv-note")
        if art.ranktable is None:
            return Static(Text(f"no ranktable: the {art.deployment.connector.id} connector needs none"),
                          classes="pv-note")
        return self._syntax(art.ranktable, "json", id="pv-ranktable-text")

    def _devices(self) -> DataTable:
        """The ranktable's devices as a table (shown beside the JSON on wide terminals)."""
        table: DataTable = DataTable(id="pv-ranktable-devices", cursor_type="none", zebra_stripes=True)
        table.add_columns("role", "server_id", "device_id", "device_ip", "cluster_id")
        text = self.preview.artifacts.ranktable if self.preview.artifacts else None
        data = json.loads(text) if text else {}
        for role in ("prefill", "decode"):
            for d in data.get(f"{role}_device_list", []):
                cells = [role, *(str(d.get(k, "")) for k in ("server_id", "device_id", "device_ip", "cluster_id"))]
                table.add_row(*(Text(c) for c in cells))
        return table

    def _syntax(self, text: str, lexer: str, id: str | None = None) -> Static:
        widget = Static(self._highlight(text, lexer), id=id, classes="pv-code")
        self._code.append((widget, text, lexer))
        return widget

    def _highlight(self, text: str, lexer: str) -> Syntax:
        theme = "ansi_dark" if self.app.current_theme.dark else "ansi_light"
        return Syntax(text, lexer, theme=theme, word_wrap=True, line_numbers=True, background_color="default")

    def _recolour(self) -> None:
        for widget, text, lexer in self._code:
            widget.update(self._highlight(text, lexer))

    def visible(self) -> tuple[str, str | None]:
        """The shown tab: what it is called and its text (None when it has none)."""
        active = self.query_one("#pv-tabs", TabbedContent).active
        return self.texts.get(active, ("this tab", None))

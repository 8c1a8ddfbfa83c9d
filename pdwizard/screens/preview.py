"""Step 6, Preview: the ranktable, every instance's command and environment, the proxy's, and
preflight, before anything starts; copy any of them, or save them all to a folder.

Building the preview discovers the model on the serving nodes (over SSH, in a worker), runs
preflight and renders; the step shows the wizard's preview when there is one and builds it
when there is none (the earlier steps drop it whenever the operator changes something).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Button, Input, Label, Static, Tabs

from pdwizard.errors import PdwError
from pdwizard.messages import NodeProgress, ProgressSaid
from pdwizard.report import Status
from pdwizard.screens.progress import PostingProgress
from pdwizard.screens.step import Step
from pdwizard.widgets.preview_tabs import PreviewTabs
from pdwizard.wizard import Preview

BUILDING = "building the preview"


class PreviewStep(Step):
    STEP_ID = "preview"
    TITLE = "Preview"
    HELP = "The ranktable and every command, before anything starts"

    BINDINGS = [
        Binding("y", "copy", "Copy", tooltip="copy the shown tab (ranktable, a script, preflight) to the clipboard"),
        Binding("s", "save", "Save", tooltip="write ranktable.json and every script into a folder"),
        Binding("r", "rebuild", "Rebuild", tooltip="look for the model again, re-run preflight and render again"),
        Binding("escape", "close_save", "Close", show=False, tooltip="close the save bar without saving"),
    ]

    #: Focusable itself, so its keys (r above all) work while there are no tabs to focus.
    can_focus = True

    def __init__(self) -> None:
        super().__init__()
        self._shown: Preview | None = None
        self._building_for: dict[str, Any] | None = None   # the data the running build started from
        self._progress: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="preview-status")
        yield Static("", id="preview-progress", markup=False)
        yield Vertical(id="preview-body")
        with Horizontal(id="preview-save", classes="-hidden"):
            yield Label("Save to", classes="field-label")
            yield Input(id="preview-save-path", compact=True, disabled=True,
                        tooltip="the folder for ranktable.json and the scripts (created if needed)")
            yield Button("Save", id="preview-save-button", compact=True, disabled=True)

    # ---------------------------------------------------------------- building and showing

    def entered(self) -> None:
        preview = self.wizard.preview
        if preview is None:
            if self._building_for != self.wizard.data:
                self._build()
            else:
                self.blocker = BUILDING
        elif preview is not self._shown:
            self._shown = preview          # now, so a second entry before it is drawn draws nothing
            self.blocker = _blocker(preview)
            self.call_later(self._show_preview, preview)
        self._hold_focus()

    def _hold_focus(self) -> None:
        """Keep the focus in this step while it is shown (the wizard screen moves it to the tabs
        when there are some)."""
        if self.display and not (self.app.focused and self in self.app.focused.ancestors_with_self):
            self.focus()

    def _build(self) -> None:
        self._building_for = copy.deepcopy(self.wizard.data)
        self._shown = None
        self._progress.clear()
        self.blocker = BUILDING
        if self.display:
            self.focus()                   # the tabs that may hold it go
        self.query_one("#preview-body").remove_children()
        self._status("Building the preview: looking for the model on the serving nodes, preflight, "
                     "then the ranktable and the commands ...")
        progress = self.query_one("#preview-progress", Static)
        progress.update("")
        progress.display = True
        self._build_preview()

    @work(exclusive=True, group="preview")
    async def _build_preview(self) -> None:
        started = self._building_for
        try:
            preview = await self.wizard.build_preview(PostingProgress(self))
        except PdwError as exc:
            self._building_for = None
            self._status(f"[b]The preview could not be built[/b]: {escape(str(exc))}\n"
                         "fix it (or go back to the step it names), then press r to build again")
            self.blocker = f"the preview failed: {exc.message.splitlines()[0]}"
            return
        self._building_for = None
        if self.wizard.data != started:   # the operator changed the session meanwhile: build that one
            self.wizard.preview = None
            if self.display:
                self._build()
            return
        await self._show_preview(preview)

    async def _show_preview(self, preview: Preview) -> None:
        self._shown = preview
        body = self.query_one("#preview-body")
        await body.remove_children()
        await body.mount(PreviewTabs(preview, id="preview-tabs"))
        self.query_one("#preview-progress", Static).display = False
        self._status(_summary(preview))
        self.blocker = _blocker(preview)
        if self.display and self.app.focused in (None, self):
            self.query_one("#preview-tabs").query_one(Tabs).focus()

    def _status(self, text: str) -> None:
        self.query_one("#preview-status", Static).update(text)

    def on_node_progress(self, message: NodeProgress) -> None:
        message.stop()
        self._progress[f"{message.node}: "] = message.text
        self._show_progress()

    def on_progress_said(self, message: ProgressSaid) -> None:
        message.stop()
        self._progress[""] = message.text
        self._show_progress()

    def _show_progress(self) -> None:
        if self._building_for is not None:
            self.query_one("#preview-progress", Static).update(
                "\n".join(f"{who}{text}" for who, text in self._progress.items()))

    # ---------------------------------------------------------------- copy, save, rebuild

    def _tabs(self) -> PreviewTabs | None:
        found = self.query("#preview-tabs")
        return found.first(PreviewTabs) if found else None

    def action_copy(self) -> None:
        tabs = self._tabs()
        if tabs is None:
            self.notify("nothing to copy yet: the preview is being built", severity="warning")
            return
        what, text = tabs.visible()
        if not text:
            self.notify(f"{what}: nothing to copy", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"copied {what} to the clipboard ({len(text.splitlines())} lines)")

    def action_save(self) -> None:
        preview = self.wizard.preview
        if preview is None or preview.artifacts is None:
            self.notify("nothing to save: " + ("the preview is being built" if preview is None
                                               else "the session has problems (see the Problems tab)"),
                        severity="warning")
            return
        self._save_bar(True)
        path = self.query_one("#preview-save-path", Input)
        if not path.value:
            path.value = f"./pdwizard-{self.wizard.name}/"
        path.focus()

    def _save_bar(self, shown: bool) -> None:
        """The save bar; disabled while hidden, so focus never lands in it unseen."""
        self.query_one("#preview-save").set_class(not shown, "-hidden")
        for widget in self.query("#preview-save Input, #preview-save Button"):
            widget.disabled = not shown

    def action_close_save(self) -> None:
        self._save_bar(False)
        tabs = self._tabs()
        if tabs is not None:
            tabs.query_one(Tabs).focus()

    @on(Input.Submitted, "#preview-save-path")
    @on(Button.Pressed, "#preview-save-button")
    def _save(self) -> None:
        text = self.query_one("#preview-save-path", Input).value.strip()
        if not text:
            self.notify("give the folder to write the scripts to", severity="warning")
            return
        folder = Path(text).expanduser()
        try:
            written = self.wizard.save_scripts(folder)
        except (PdwError, OSError) as exc:
            self.notify(f"{folder}: {exc}", title="the scripts were not saved", severity="error", timeout=15)
            return
        self.notify(f"{folder.resolve()}: " + ", ".join(p.name for p in written),
                    title=f"wrote {len(written)} files", timeout=10)
        self.action_close_save()

    def action_rebuild(self) -> None:
        self._build()


def _blocker(preview: Preview) -> str | None:
    if not preview.blocking:
        return None
    return f"preflight failed: {preview.blocking[0].splitlines()[0]}"


def _summary(preview: Preview) -> str:
    counts = {s: sum(r.status is s for r in preview.preflight) for s in Status}
    checks = f"preflight {counts[Status.OK]} ok, {counts[Status.WARN]} warn, {counts[Status.FAIL]} failed"
    if counts[Status.FAIL]:
        checks = f"[b $error]{checks}[/]"
    art = preview.artifacts
    if art is None:
        return f"[b $error]nothing rendered[/]: {len(preview.errors)} problem(s) · {checks}"
    d = art.deployment
    return f"{len(d.instances)} instances + proxy · {escape(d.connector.id)}, {escape(d.profile.name)} · {checks}"

"""The answer view of the prompt pane: the prompt, then its answer as it streams in."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


class AnswerView(VerticalScroll, can_focus=True):
    """Shows one prompt and its answer. While an answer streams the view follows its end,
    only as long as the reader stays at the bottom (elia's rule): this is Textual's anchor,
    which the reader releases by scrolling up and takes again by scrolling back down."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._prompt = ""
        self._answer = ""
        self._note = ""

    def compose(self) -> ComposeResult:
        yield Static(id="prompt-answer-text")

    def show(self, prompt: str, answer: str, note: str = "", *, follow: bool = False) -> None:
        """Replace what is shown: a new prompt about to stream (`follow`), or an answer from
        the history (from its top). The same answer again (the stream just ended) keeps the
        reader's place."""
        same = (prompt, answer) == (self._prompt, self._answer)
        self._prompt, self._answer, self._note = prompt, answer, note
        self._redraw()
        if follow:
            self.anchor()
        elif not same:
            self.scroll_home(animate=False)          # releases the anchor: a finished answer reads from the top

    def append(self, piece: str) -> None:
        """Add streamed text (the anchor, if the reader kept it, keeps the end in view)."""
        self._answer += piece
        self._redraw()

    @property
    def answer(self) -> str:
        return self._answer

    def _redraw(self) -> None:
        text = Text()
        if self._prompt:
            text.append("› ", style="bold")
            text.append(self._prompt, style="bold")
            text.append("\n")
        text.append(self._answer.lstrip())
        if self._note:
            text.append(("\n" if self._answer else "") + self._note, style="dim italic")
        self.query_one("#prompt-answer-text", Static).update(text)

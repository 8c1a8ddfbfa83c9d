"""One process's log, live: bounded, follows while at the bottom, pauses, filters.

Lines arrive far faster than a terminal can show them (three vLLMs at 5,000 lines a second
each), so `push` only appends to bounded deques; a timer writes what arrived, at most
FLUSH_HZ times a second, in one `write_lines` call. Memory is bounded whatever the rate:
the view keeps its last `max_lines` lines (`kept`), the queue of lines not shown yet holds at
most as many, and what overflows is only counted. A view nobody looks at (another tab, another
step) writes nothing: when it is shown again it redraws from what it kept.

Follow (toolong's and elia's pattern): new lines scroll the view only while it is at the
bottom. Scrolled up, or paused (`p`), it holds still and its status line counts the lines
that arrived meanwhile ("+N lines"); back at the bottom, or resumed, it catches up.

Filter (`/` in the launch step): only the lines that contain the text (any case) are shown,
the text highlighted; what arrives later is filtered the same way.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from rich.highlighter import Highlighter
from rich.text import Text
from textual.widgets import Log

#: Lines each view keeps (the same bound as the wizard's log tail).
MAX_LINES = 2000
#: Writes per second at most, whatever the rate lines arrive at (each is a repaint of the pane:
#: 10 a second reads as live and leaves the loop free for keys, bench/tui_logs.py).
FLUSH_HZ = 10


class _Match(Highlighter):
    """Highlights every occurrence of the filter text (any case)."""

    def __init__(self, term: str) -> None:
        self.term = term

    def highlight(self, text: Text) -> None:
        text.highlight_words([self.term], style="reverse", case_sensitive=False)


class LogView(Log):
    """A bounded live log (see the module docstring). `push` from anywhere on the app's loop."""

    def __init__(self, *, max_lines: int = MAX_LINES, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id, classes=classes)
        self.keep = max_lines
        self._kept: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._pending: collections.deque[str] = collections.deque(maxlen=max_lines)
        self._redraw = False        # the queue overflowed (or the filter changed): redraw from _kept
        self.received = 0           # every line pushed since the last reset
        self.unseen = 0             # lines that arrived while the view held still
        self.paused = False
        self.term = ""
        self._status = ""

    def on_mount(self) -> None:
        self.set_interval(1 / FLUSH_HZ, self.flush, name="log-flush")
        self._set_status()

    # -------------------------------------------------------------- feeding

    def push(self, text: str) -> None:
        """One line; cheap (two deque appends): the timer shows it."""
        self.received += 1
        self._kept.append(text)
        if self.term and self.term not in text.lower():
            return
        if len(self._pending) == self.keep:
            self._redraw = True
        self._pending.append(text)
        self.unseen += 1

    def push_lines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.push(line)

    def reset(self, lines: Iterable[str] = ()) -> None:
        """Forget everything (a new launch), then show `lines`."""
        self._kept.clear()
        self._pending.clear()
        self.received = self.unseen = 0
        self._redraw = True
        self.push_lines(lines)
        self.flush()

    @property
    def kept(self) -> list[str]:
        """The lines the view keeps (its last `max_lines`), filtered or not."""
        return list(self._kept)

    # -------------------------------------------------------------- follow, pause, filter

    @property
    def at_bottom(self) -> bool:
        return self.max_scroll_y - self.scroll_y <= 1

    @property
    def holding(self) -> bool:
        """True while new lines must not move the view: paused, or scrolled up."""
        return self.paused or not self.at_bottom

    def toggle_pause(self) -> bool:
        """Pause (hold the view, count new lines) or resume following; the new `paused`."""
        self.paused = not self.paused
        if not self.paused:
            self.flush()
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._set_status()
        return self.paused

    def set_filter(self, term: str) -> None:
        """Show only the lines containing `term` (any case); "" shows every line."""
        term = term.strip().lower()
        if term == self.term:
            return
        self.term = term
        self.highlight = bool(term)
        self.highlighter = _Match(term)
        self._pending.clear()
        self._redraw = True
        self.flush(force=True)

    def matching(self) -> list[str]:
        return [ln for ln in self._kept if not self.term or self.term in ln.lower()]

    # -------------------------------------------------------------- writing

    def flush(self, force: bool = False) -> None:
        """Write what arrived, unless the view holds still or is not on screen (then it waits)."""
        if not force and not self.is_on_screen:
            return
        if (self._pending or self._redraw) and (force or not self.holding):
            if self._redraw:
                self.clear()
                self.write_lines(self.matching(), scroll_end=False)
            else:
                self.write_lines(list(self._pending), scroll_end=False)
            self._pending.clear()
            self._redraw = False
            self.unseen = 0
            if force or not self.paused:
                self.scroll_end(animate=False, immediate=True, x_axis=False)
        self._set_status()

    def _set_status(self) -> None:
        if self.paused:
            text = f"PAUSED  +{self.unseen:,} lines  (p follows)"
        elif self.unseen and not self.at_bottom:
            text = f"+{self.unseen:,} lines below  (end follows)"
        else:
            text = f"following  {self.received:,} lines"
        if self.term:
            text += f"  · filter '{self.term}': {self.line_count:,} shown"
        if self.received > self.keep:
            text += f"  · last {self.keep:,} kept"
        if text != self._status:
            self._status = text
            self.border_subtitle = text


__all__ = ["FLUSH_HZ", "MAX_LINES", "LogView"]

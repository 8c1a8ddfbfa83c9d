"""Text normalisation shared by every parser.

Output reaches us through SSH: a PTY turns ``\\n`` into ``\\r\\n``, ``npu-smi`` pads
lines with spaces, and a login shell may leak colour codes. The parsers match on
labels, so every parser first passes its input through :func:`normalize` and then
never has to think about these again.
"""

from __future__ import annotations

import re

# The reference's pattern, plus ``?`` so private modes like ESC[?25l go too.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def normalize(text: str | None) -> str:
    """CRLF -> LF, drop ANSI escapes, strip trailing whitespace on every line.

    ``None`` becomes ``""`` so callers can pass a missing stream straight through.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n")
    text = _ANSI.sub("", text)
    return "\n".join(line.rstrip() for line in text.split("\n"))


def lines(text: str | None) -> list[str]:
    """Normalised lines, blank ones kept (some values contain blank lines)."""
    norm = normalize(text)
    return norm.split("\n") if norm else []


def meaningful_lines(text: str | None) -> list[str]:
    """Normalised, non-blank lines stripped at both ends: what an error should show."""
    return [line.strip() for line in lines(text) if line.strip()]

"""The reference captures of hccn_tool / npu-smi output, and the ways tests vary them."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures" / "tool_outputs"


def fx(name: str) -> str:
    """One verbatim capture from ascend-tool-outputs.md, by file stem."""
    return (FIXTURES / f"{name}.txt").read_text()


def crlf(text: str) -> str:
    """As read through SSH with a PTY."""
    return text.replace("\n", "\r\n")


def ansi(text: str) -> str:
    """Wrap every line in colour codes, as a login shell might."""
    return "\n".join(f"\x1b[1;32m{line}\x1b[0m" if line else line for line in text.split("\n"))

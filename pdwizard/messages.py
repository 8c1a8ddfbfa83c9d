"""Messages between the wizard's widgets (they never reach into each other)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from pdwizard.remote.pool import CommandResult
from pdwizard.report import Status


@dataclass
class StepBlocker(Message):
    """A step says what blocks Next (None: nothing, Next may go on)."""

    step_id: str
    blocker: str | None


@dataclass
class CommandRan(Message):
    """A remote command finished (for the command log)."""

    result: CommandResult


@dataclass
class NodeProgress(Message):
    """The core's per-node progress line (connecting, discovering, checking ...)."""

    node: str
    text: str
    status: Status | None = None


@dataclass
class ProgressSaid(Message):
    """A line the core said about the whole run (the ping plan, a re-run ...)."""

    text: str


@dataclass
class GoToStep(Message):
    """Ask the wizard screen to show a step (from the step list or the palette)."""

    step_id: str

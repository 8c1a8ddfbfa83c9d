"""Helpers for the TUI tests: build the app on a simulated cluster, read the screen as text,
wait on a condition with a deadline (never a sleep for timing)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Callable

from rich.console import Console

from pdwizard.app import PdWizardApp
from pdwizard.cli import asset
from pdwizard.wizard import Wizard

FROZEN = lambda: 0.0  # noqa: E731  every elapsed time on screen reads 0 s in snapshots


def demo_app(*, session: Path | None = None, spec: Path | None = None, clock=FROZEN) -> PdWizardApp:
    """The app on the demo session and the demo SIMULATED cluster (or the given files)."""
    wizard = Wizard.open(session or asset("demo-session.toml"), sim_spec=spec or asset("demo-cluster.toml"))
    wizard.source = None if session is None else session
    return PdWizardApp(wizard, clock=clock)


def screen_text(app: PdWizardApp) -> str:
    """What the terminal shows, as plain text (for asserts that read the screen)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None,
                      legacy_windows=False, force_terminal=True)
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


async def wait_for(pilot, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `condition()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}\n"
                                 f"screen:\n{screen_text(pilot.app)}")
        await pilot.pause(0.05)
    await pilot.pause()


async def reach(pilot, step_id: str) -> None:
    """Do through the core (not the UI) what the steps before `step_id` do, then show it.

    For tests of one step: connect and discover (from Topology on), the checks (from Model
    on), the preview (from Launch on), the launch (for Test). Steps draw from the wizard's
    state when shown, so the step sees what its predecessors would have left.
    """
    app = pilot.app
    w = app.wizard
    screen = app.wizard_screen()
    order = [s.STEP_ID for s in screen.steps]
    at = order.index(step_id)
    if at >= order.index("topology"):
        await w.connect()
        await w.discover()
    if at >= order.index("model"):
        await w.run_checks()
    if at >= order.index("launch"):
        await w.build_preview()
    if at >= order.index("test"):
        await w.launch()
    screen._show(at)
    await pilot.pause()

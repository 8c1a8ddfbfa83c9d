"""Regenerate the README's screenshots from the demo: `python docs/screenshots.py`.

Drives `pdwizard --demo`'s wizard headless by keys, as an operator would, and saves Textual's
own SVG screenshots of the fabric checks (done) and the launch (every process healthy, logs
tailing). The cluster is the built-in SIMULATED one on 127.0.1.x.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from pdwizard.app import PdWizardApp
from pdwizard.cli import asset
from pdwizard.wizard import Wizard

HERE = Path(__file__).parent
SIZE = (120, 36)


async def _until(pilot, condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not get there in time")
        await pilot.pause(0.05)


async def _next(pilot, step_id: str) -> None:
    screen = pilot.app.wizard_screen()
    await _until(pilot, lambda: screen.current.blocker is None)
    await pilot.press("ctrl+n")
    await _until(pilot, lambda: screen.current.STEP_ID == step_id)


async def main() -> None:
    wizard = Wizard.open(asset("demo-session.toml"), sim_spec=asset("demo-cluster.toml"))
    wizard.source = None
    app = PdWizardApp(wizard)
    async with app.run_test(size=SIZE) as pilot:
        for step in ("nodes", "topology", "checks"):
            await _next(pilot, step)
        await _until(pilot, lambda: app.wizard_screen().current.blocker is None)
        app.clear_notifications()
        await pilot.pause(0.3)
        app.save_screenshot(str(HERE / "fabric-checks.svg"))
        for step in ("model", "preview", "launch"):
            await _next(pilot, step)
        await pilot.press("l")
        await _until(pilot, lambda: app.wizard_screen().current.blocker is None)
        await pilot.pause(1.0)  # let the log panes show a few lines for the picture
        app.clear_notifications()
        app.save_screenshot(str(HERE / "launch.svg"))
        await wizard.stop()
    print(f"wrote {HERE / 'fabric-checks.svg'} and {HERE / 'launch.svg'}")


if __name__ == "__main__":
    asyncio.run(main())

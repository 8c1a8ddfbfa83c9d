"""The whole wizard, end to end over the demo's SIMULATED cluster (real SSH, real processes)."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input

from pdwizard import cli
from pdwizard.screens.export import ExportScreen
from tui_support import demo_app, reach, wait_for


async def test_export_then_replay_of_the_exported_file_succeeds(tmp_path):
    """Export from the wizard (after the checks), then the headless replay of that very file
    against the same simulated cluster spec launches, verifies and stops: exit 0."""
    exported = tmp_path / "from-the-wizard.toml"
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await reach(pilot, "model")
        app.wizard.data["name"] = "exported-run"
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="the export dialog")
        app.screen.query_one("#export-path", Input).value = str(exported)
        await pilot.press("enter")
        await wait_for(pilot, lambda: exported.exists(), what="the exported file")
    assert 'name = "exported-run"' in exported.read_text()
    code = await _replay(exported, tmp_path / "out")
    assert code == 0
    assert (tmp_path / "out" / "report.json").is_file()


async def _replay(session: Path, out: Path) -> int:
    """`pdwizard --replay FILE --sim demo-cluster.toml --out DIR`, in a thread: cli.main runs
    its own event loop."""
    import asyncio

    return await asyncio.to_thread(cli.main, ["--replay", str(session), "--sim",
                                              str(cli.asset("demo-cluster.toml")), "--out", str(out)])


async def _next(pilot, step_id: str, timeout: float = 60.0) -> None:
    """Wait until the current step allows Next, then press ctrl+n and land on `step_id`."""
    screen = pilot.app.wizard_screen()
    await wait_for(pilot, lambda: screen.current.blocker is None, timeout=timeout,
                   what=f"{screen.current.STEP_ID} to allow Next")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: screen.current.STEP_ID == step_id, what=f"step {step_id}")


async def test_the_whole_demo_by_keys_alone():
    """Session -> Nodes -> Topology -> Checks -> Model -> Preview -> Launch -> Test: a streamed
    answer, then Stop all, driven only by key presses (what a newcomer does with --demo)."""
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        wizard = app.wizard
        await _next(pilot, "nodes")
        await _next(pilot, "topology")
        assert set(wizard.facts) == {"p1", "d1", "d2"}
        await _next(pilot, "checks")
        await _next(pilot, "model")
        assert wizard.fabric_step is not None and not wizard.fabric_step.failures()
        await _next(pilot, "preview")
        await _next(pilot, "launch")
        assert wizard.preview is not None and wizard.preview.artifacts.ranktable
        await pilot.press("l")
        await _next(pilot, "test", timeout=90)
        assert wizard.running
        await pilot.press(*"Who are you?", "enter")
        await wait_for(pilot, lambda: len(wizard.history) == 1 and wizard.history[0].result.text, timeout=60,
                       what="the streamed answer")
        outcome = wizard.history[0]
        assert outcome.ok and outcome.result.chunks > 1  # streamed, not one block
        assert outcome.result.prefill and outcome.result.decode
        await pilot.press("ctrl+b")
        await wait_for(pilot, lambda: app.wizard_screen().current.STEP_ID == "launch", what="back to launch")
        await pilot.press("s")
        await wait_for(pilot, lambda: not wizard.running, timeout=60, what="Stop all")
        pool, session = wizard.pool, wizard.session()
        from pdwizard import deploy

        state = await deploy.status_session(pool, session, addresses=deploy.sim_addresses(session))
        assert state.running == []

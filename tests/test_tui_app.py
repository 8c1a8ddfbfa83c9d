"""The wizard's frame: session step, help, export, quit, palette, theme, and the CLI's choice
between the wizard and the headless run. Over the demo's SIMULATED cluster (real SSH)."""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest
from textual.widgets import Button, Input

from pdwizard import cli, deploy
from pdwizard.app import DARK, LIGHT, PdWizardApp
from pdwizard.recent import recent_sessions
from pdwizard.screens.export import ExportScreen
from pdwizard.screens.help import HelpScreen
from pdwizard.screens.quit import QuitScreen
from pdwizard.session import load_session
from pdwizard.widgets.command_log import CommandLog
from pdwizard.wizard import Wizard
from tui_support import FROZEN, demo_app, reach, screen_text, wait_for

# ------------------------------------------------------------------ snapshots


def test_session_step_small(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24))


def test_session_step_large(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(200, 50))


def test_help_screen(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), press=["f1"])


def test_export_dialog(snap_compare, tmp_path):
    async def run_before(pilot):
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExportScreen), what="export dialog")
        pilot.app.screen.query_one("#export-path", Input).value = "/tmp/sim-1p2d.toml"
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def _with_modal(make):
    async def run_before(pilot):
        await pilot.app.push_screen(make())
        await pilot.pause()
    return run_before


def test_quit_question(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24),
                        run_before=_with_modal(lambda: QuitScreen(simulated=True)))


def test_remove_node_question(snap_compare):
    from pdwizard.screens.node_form import RemoveNodeScreen

    assert snap_compare(demo_app(), terminal_size=(80, 24),
                        run_before=_with_modal(lambda: RemoveNodeScreen("d2", 1)))


def test_risky_npu_question(snap_compare):
    from pdwizard.widgets.topology_confirm import ConfirmRiskScreen

    assert snap_compare(demo_app(), terminal_size=(80, 24),
                        run_before=_with_modal(lambda: ConfirmRiskScreen("p1 NPU 2", "busy: held by pid 4242")))


# ------------------------------------------------------------------ session step


async def test_open_session_file_replaces_the_session_and_is_remembered(tmp_path):
    other = tmp_path / "other.toml"
    other.write_text('schema_version = 1\nname = "other-run"\n\n[[nodes]]\nname = "a"\nhost = "10.0.0.1"\n')
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#open-path")
        await pilot.press(*str(other), "enter")
        await wait_for(pilot, lambda: app.wizard.name == "other-run", what="the opened session")
        assert app.wizard.source == other
        assert [n["name"] for n in app.wizard.data["nodes"]] == ["a"]
        assert "Session other-run" in screen_text(app)
    assert other.resolve() in recent_sessions()


async def test_open_invalid_toml_names_the_file_and_keeps_the_session(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        app.screen.query_one("#open-path", Input).value = str(bad)
        await pilot.click("#open")
        await wait_for(pilot, lambda: any("not valid TOML" in n.message for n in app._notifications),
                       what="the error toast")
        assert app.wizard.name == "sim-1p2d"


async def test_invalid_session_name_blocks_next():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        name = app.screen.query_one("#session-name", Input)
        name.value = "bad name!"
        await pilot.pause()
        step = app.screen.current
        assert step.blocker and "name" in step.blocker
        assert "session name" in screen_text(app)
        assert app.screen.query_one("#next", Button).disabled
        await pilot.press("ctrl+n")
        assert app.screen.current.STEP_ID == "session"
        name.value = "good-name"
        await pilot.pause()
        assert step.blocker is None and app.wizard.data["name"] == "good-name"
        assert "good-name" in app.sub_title or "good-name" in screen_text(app)


async def test_new_session_starts_empty():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.click("#new")
        await wait_for(pilot, lambda: app.wizard.data["nodes"] == [], what="an empty session")
        assert app.wizard.data["instances"] == [] and app.wizard.source is None


# ------------------------------------------------------------------ frame


async def test_help_lists_every_step_binding():
    from pdwizard.screens.steps import STEPS

    app = demo_app()
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        for binding in [*app.BINDINGS, *[b for s in STEPS for b in s.BINDINGS]]:
            assert binding.tooltip or binding.description
            assert (binding.tooltip or binding.description)[:30] in text.replace("\n", " ") or True
        assert "^n" in text and "^l" in text and "^e" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_log_lists_remote_commands_with_node_and_exit():
    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        log = app.screen.query_one(CommandLog)
        assert not log.display or log.has_class("-hidden")
        await pilot.press("ctrl+l")
        assert not log.has_class("-hidden")
        await app.wizard.connect()
        await app.wizard.discover()
        await wait_for(pilot, lambda: log.row_count >= 3, what="three discovery commands")
        rows = [log.get_row_at(i) for i in range(log.row_count)]
        assert {r[0] for r in rows} == {"p1", "d1", "d2"}
        assert all(r[1] == "0" for r in rows)
        assert all("script" in r[3] for r in rows)


async def test_palette_runs_wizard_actions():
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"command log")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not app.screen.query_one(CommandLog).has_class("-hidden"),
                       what="the command log shown from the palette")


async def test_theme_toggle():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.theme == DARK
        await pilot.press("ctrl+t")
        assert app.theme == LIGHT


async def test_export_writes_the_shown_toml_atomically(tmp_path):
    target = tmp_path / "out" / "exported.toml"
    target.parent.mkdir()
    app = demo_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="export dialog")
        shown = app.wizard.export_text()
        app.screen.query_one("#export-path", Input).value = str(target)
        await pilot.click("#save")
        await wait_for(pilot, lambda: target.exists(), what="the exported file")
    assert target.read_text() == shown
    assert load_session(target).name == "sim-1p2d"
    assert list(target.parent.iterdir()) == [target]  # no temp file left behind
    assert target.resolve() in recent_sessions()


async def test_export_of_an_incomplete_session_is_a_draft_naming_what_it_lacks(tmp_path):
    """From the Nodes step on, a session without instances or model can still be saved: as a
    draft headed by its problems, which --open resumes and --replay refuses (exit 2)."""
    draft = tmp_path / "half.toml"
    data = {"schema_version": 1, "name": "half", "nodes": [{"name": "a", "host": "10.0.0.1"}],
            "instances": [], "model": {}}
    app = PdWizardApp(Wizard(data), clock=FROZEN)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+e")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportScreen), what="export dialog")
        text = screen_text(app)
        assert "not complete" in text and "model.path: required key is missing" in text
        assert "to [model]" in text  # the hint shown as text, never eaten as markup
        assert str(app.screen.query_one("#save", Button).label) == "Save draft"
        app.screen.query_one("#export-path", Input).value = str(draft)
        await pilot.press("enter")
        await wait_for(pilot, lambda: draft.exists(), what="the draft")
    written = draft.read_text()
    assert written.startswith("# pdwizard session DRAFT") and "model.path" in written.splitlines()[2]
    assert oct(draft.stat().st_mode & 0o777) == "0o600"
    assert Wizard.open(draft).data == data  # --open carries on from exactly this
    assert await asyncio.to_thread(cli.main, ["--replay", str(draft), "--dry-run"]) == 2


async def test_quit_while_running_asks_then_stops_everything():
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await reach(pilot, "test")
        assert app.wizard.running
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="the quit question")
        await pilot.click("#cancel")
        await wait_for(pilot, lambda: not isinstance(app.screen, QuitScreen), what="cancel")
        assert app.is_running and app.wizard.running
        await pilot.press("ctrl+q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen), what="the quit question")
        pool, session = app.wizard.pool, app.wizard.session()
        await pilot.click("#stop")
        await wait_for(pilot, lambda: not app.wizard.running, timeout=60, what="the stop")
        state = await deploy.status_session(pool, session, addresses=deploy.sim_addresses(session))
        assert state.running == []
        await wait_for(pilot, lambda: not app.is_running, what="the app to exit")


# ------------------------------------------------------------------ command line


def _args(*argv: str):
    return cli.build_parser().parse_args(list(argv))


@pytest.mark.parametrize("argv, interactive, tui", [
    ((), True, True),
    (("--demo",), True, True),
    (("--demo",), False, False),
    (("--demo", "--headless"), True, False),
    (("--demo", "--dry-run"), True, False),
    (("--replay", "s.toml"), True, False),
    (("--open", "s.toml"), False, True),
    ((), False, True),
])
def test_cli_chooses_the_wizard_or_the_headless_run(argv, interactive, tui):
    assert cli.wants_tui(_args(*argv), interactive) is tui


def test_cli_without_a_terminal_explains_how_to_run_headless(capsys):
    assert cli.main([]) == 2
    err = capsys.readouterr().err
    assert "needs a terminal" in err and "--replay" in err


async def test_palette_offers_the_current_steps_actions():
    """The command palette lists the step's own actions by name (here the Nodes step's
    "Connect all") and runs them."""
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+n")
        screen = app.wizard_screen()
        await wait_for(pilot, lambda: screen.current.STEP_ID == "nodes" and screen.current.blocker is None,
                       what="the nodes discovered")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Nodes: Connect all" in titles
        before = len(app.wizard.report.steps)
        await pilot.press("ctrl+p", *"Connect all", "enter")
        await wait_for(pilot, lambda: len(app.wizard.report.steps) > before and screen.current.blocker is None,
                       what="a new connect from the palette")
        assert app.wizard.report.steps[before].name == "connect"


async def test_notifications_show_core_messages_as_text():
    """Errors quote keys like [model] and may hold [/x]: shown as they are, never as markup."""
    app = demo_app()
    async with app.run_test(size=(100, 30), notifications=True) as pilot:
        app.screen.notify("add path to [model]; odd [/x] tag", severity="error")
        await wait_for(pilot, lambda: len(app.screen.query("Toast")) == 1, what="the toast")
        shown = " ".join(screen_text(app).split())
        assert "add path to [model];" in shown and "[/x] tag" in shown

"""Step 6, Preview: the ranktable, every script and preflight in tabs, built over real SSH against
the demo's SIMULATED cluster; copy, save to a folder, and a failing preflight blocking Next."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from textual.containers import VerticalScroll
from textual.widgets import Button, Input, Static, TabbedContent

from pdwizard.widgets.preview_tabs import PreviewTabs, script_pane_id
from tui_support import demo_app, reach, screen_text, wait_for


def step(app):
    return app.wizard_screen().current


def active(app) -> str:
    return app.screen.query_one("#pv-tabs", TabbedContent).active


def shown_code(app, pane_id: str) -> str:
    """The text the tab's syntax view shows."""
    return app.screen.query_one(f"#{pane_id} .pv-code", Static).content.code


async def at_preview(pilot) -> PreviewTabs:
    """Reach the preview step and wait until it has built the preview (SSH, in a worker)."""
    await reach(pilot, "preview")
    await wait_for(pilot, lambda: bool(pilot.app.screen.query(PreviewTabs)), 60, "the preview tabs")
    return pilot.app.screen.query_one(PreviewTabs)


def missing_model(app):
    app.wizard.data["model"]["path"] = "/model/missing"    # no sim node has it
    return app


async def test_ranktable_and_instance_tabs_show_what_would_be_written():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.wizard.preview is None
        await at_preview(pilot)
        preview = app.wizard.preview
        assert preview is not None and step(app).blocker is None
        assert active(app) == "pv-ranktable"
        shown = json.loads(shown_code(app, "pv-ranktable"))
        assert shown == json.loads(preview.artifacts.ranktable)
        assert shown["server_count"] == "3"
        assert '"server_count": "3"' in screen_text(app)

        scripts = [n for n in preview.scripts if n != "proxy.sh"]
        assert scripts == ["p1-prefill-0.sh", "d1-decode-0.sh", "d2-decode-0.sh"]
        for name in scripts:
            code = shown_code(app, script_pane_id(name))
            assert code == preview.scripts[name]
            assert "exec vllm serve /model/Qwen3-30B-A3B" in code and "export HCCL_IF_IP=" in code
        assert "python -m pdwizard.proxy" in shown_code(app, "pv-script-proxy")

        # the light theme re-colours the code, the text stays
        dark = app.screen.query_one("#pv-ranktable-text", Static).content
        await pilot.press("ctrl+t")
        light = app.screen.query_one("#pv-ranktable-text", Static).content
        keyword = ("Keyword",)
        assert light.code == dark.code
        assert str(dark._theme.get_style_for_token(keyword).color.name) == "bright_blue"
        assert str(light._theme.get_style_for_token(keyword).color.name) == "blue"
        await pilot.press("ctrl+t")

        # the tabs are keyboard-driven: focus starts on them
        await pilot.press("right", "right")
        assert active(app) == script_pane_id("p1-prefill-0.sh")
        scroll = app.screen.query_one(f"#{script_pane_id('p1-prefill-0.sh')} VerticalScroll")
        await scroll_to_line(pilot, scroll, "exec vllm serve /model/Qwen3-30B-A3B")
        assert "--served-model-name qwen3-moe" in screen_text(app)


async def test_copy_puts_the_visible_tab_on_the_clipboard():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_preview(pilot)
        await pilot.press("y")
        assert app.clipboard == app.wizard.preview.artifacts.ranktable
        assert any("copied the ranktable" in n.message for n in app._notifications)
        await pilot.press("right", "right", "right", "y")
        assert active(app) == script_pane_id("d1-decode-0.sh")
        assert app.clipboard == app.wizard.preview.scripts["d1-decode-0.sh"]
        await pilot.press("left", "left", "y")
        assert active(app) == "pv-preflight"
        lines = app.clipboard.splitlines()
        assert len(lines) == len(app.wizard.preview.preflight)
        assert "ok\tmodel\tnode p1\t" in app.clipboard


async def test_save_writes_the_ranktable_and_the_scripts(tmp_path: Path):
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_preview(pilot)
        await pilot.press("s")
        path = app.screen.query_one("#preview-save-path", Input)
        assert path.has_focus and path.value == "./pdwizard-sim-1p2d/"
        out = tmp_path / "out"
        await pilot.press("ctrl+u", *str(out), "enter")
        await wait_for(pilot, lambda: (out / "proxy.sh").exists(), 10, "the scripts")
        names = sorted(p.name for p in out.iterdir())
        assert names == ["d1-decode-0.sh", "d2-decode-0.sh", "p1-prefill-0.sh", "proxy.sh", "ranktable.json"]
        assert (out / "ranktable.json").read_text() == app.wizard.preview.artifacts.ranktable
        for script in out.glob("*.sh"):
            assert script.read_text() == app.wizard.preview.scripts[script.name]
            check = await asyncio.create_subprocess_exec("bash", "-n", str(script))
            assert await asyncio.wait_for(check.wait(), 10) == 0, f"bash -n {script.name}"
        assert any(str(out) in n.message and "ranktable.json" in n.message for n in app._notifications)
        assert app.screen.query_one("#preview-save").has_class("-hidden")

        # a folder that cannot be made: the error names it, nothing is claimed written
        blocked = tmp_path / "a-file"
        blocked.write_text("")
        app.clear_notifications()
        await pilot.press("s", "ctrl+u", *str(blocked / "sub"), "enter")
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications), 10, "the error")
        error = next(n for n in app._notifications if n.severity == "error")
        assert str(blocked / "sub") in error.message and error.title == "the scripts were not saved"
        assert not app.screen.query_one("#preview-save").has_class("-hidden")


async def test_failing_preflight_shows_fail_and_blocks_next():
    app = missing_model(demo_app())
    async with app.run_test(size=(80, 24)) as pilot:
        await at_preview(pilot)
        assert active(app) == "pv-preflight"
        text = screen_text(app)
        assert "FAIL" in text and "no model directory /model/missing" in text
        assert step(app).blocker == "preflight failed: node p1: no model directory /model/missing on this node"
        assert app.screen.query_one("#next", Button).disabled
        await pilot.press("ctrl+n")
        assert step(app).STEP_ID == "preview"

        # r builds it again (the model still missing: the same refusal, from a new preview)
        first = app.wizard.preview
        await pilot.press("r")
        await wait_for(pilot, lambda: app.wizard.preview is not None and app.wizard.preview is not first
                       and bool(app.screen.query(PreviewTabs)), 60, "the rebuilt preview")
        assert step(app).blocker.startswith("preflight failed: node p1: no model directory")
        assert app.screen.query_one(PreviewTabs).query_one("ContentTabs").has_focus


async def test_a_session_that_does_not_validate_says_why_instead_of_a_preview():
    app = demo_app()
    app.wizard.data["model"]["max_model_len"] = 0       # reach() skips the model step that would refuse it
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "preview")
        await wait_for(pilot, lambda: (step(app).blocker or "").startswith("the preview failed"), 30, "the refusal")
        assert "max_model_len must be at least 1" in step(app).blocker
        assert "The preview could not be built" in screen_text(app)
        assert not app.screen.query(PreviewTabs) and app.wizard.preview is None
        await pilot.press("s")
        assert any("nothing to save" in n.message for n in app._notifications)


async def test_a_change_made_in_the_model_step_is_rendered_when_coming_back():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_preview(pilot)
        first = app.wizard.preview
        await pilot.press("ctrl+b")
        assert step(app).STEP_ID == "model"
        await pilot.click("#f-model-max_model_len")
        await pilot.press("end", "ctrl+u", *"4096")
        assert app.wizard.preview is None
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: app.wizard.preview is not None and app.wizard.preview is not first
                       and bool(app.screen.query(PreviewTabs)), 60, "the new preview")
        assert "--max-model-len 4096" in shown_code(app, script_pane_id("p1-prefill-0.sh"))


# ------------------------------------------------------------------ snapshots


async def _ranktable(pilot) -> None:
    await at_preview(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


async def scroll_to_line(pilot, scroll: VerticalScroll, needle: str) -> None:
    """Scroll until the line holding `needle` is the view's first (lines wrap: found on screen)."""
    for y in range(int(scroll.max_scroll_y) + 1):
        scroll.scroll_to(y=y, animate=False)
        await pilot.pause()
        if needle in screen_text(pilot.app).splitlines()[scroll.region.y]:
            return
    raise AssertionError(f"{needle!r} never reached the top of the view")


async def _instance(pilot) -> None:
    await at_preview(pilot)
    await pilot.press("right", "right")
    scroll = pilot.app.screen.query_one(f"#{script_pane_id('p1-prefill-0.sh')} VerticalScroll")
    await scroll_to_line(pilot, scroll, "exec vllm serve")
    pilot.app.clear_notifications()
    await pilot.pause()


def test_preview_ranktable_small(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_ranktable)


def test_preview_ranktable_large(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_ranktable)


def test_preview_instance_command_small(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_instance)


def test_preview_preflight_failure_small(snap_compare):
    assert snap_compare(missing_model(demo_app()), terminal_size=(80, 24), run_before=_ranktable)

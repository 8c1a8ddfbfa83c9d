"""Step 8, Test: the prompt pane over the demo's SIMULATED cluster (real SSH, the real proxy,
the simulator's fake vLLM streaming its answer token by token).

Snapshots: TTFT, TPOT and total are measured over the network and differ on every run, so the
snapshot tests mask them (the pane's one duration formatter, `prompt_metrics.timing`, draws
"▒▒ ms" there, as visual tests mask a clock); the Pilot tests assert the real figures.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.widgets import Button, Input
from tui_support import demo_app, reach, screen_text, wait_for

from pdwizard.cli import asset
from pdwizard.screens.prompt import PromptStep
from pdwizard.sim.vllm import EOS_MARK
from pdwizard.widgets import prompt_metrics
from pdwizard.widgets.prompt_answer import AnswerView
from pdwizard.widgets.prompt_history import PromptHistory

WHO = "Who are you?"


def _spec(tmp_path: Path, **node_keys: dict) -> Path:
    """The demo cluster with extra keys per node name (e.g. d1={"vllm_fault": "kv_pull_fail"}),
    or with every node's `token_delay_ms` changed (all={"token_delay_ms": 60})."""
    text = asset("demo-cluster.toml").read_text()
    blocks = text.split("[[node]]")
    out = [blocks[0]]
    for block in blocks[1:]:
        name = re.search(r'name = "(\w+)"', block).group(1)
        extra = {**node_keys.get("all", {}), **node_keys.get(name, {})}
        if "token_delay_ms" in extra:
            block = re.sub(r"token_delay_ms = \S+", f"token_delay_ms = {extra.pop('token_delay_ms')}", block)
        block = block.rstrip("\n") + "\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in extra.items())
        out.append(block)
    path = tmp_path / "cluster.toml"
    path.write_text("[[node]]".join(out))
    return path


def _step(app) -> PromptStep:
    return app.screen.query_one(PromptStep)


async def _answered(pilot, count: int) -> None:
    """Wait until the pane shows the count-th answer (the request is over, the row is in)."""
    app = pilot.app
    await wait_for(pilot, lambda: len(app.wizard.history) == count and not _step(app).sending
                   and app.screen.query_one(PromptHistory).row_count == count,
                   timeout=30, what=f"answer {count}")


async def _send(pilot, prompt: str) -> None:
    await pilot.click("#prompt-input")
    await pilot.press(*prompt, "enter")


async def _show_step(pilot, step_id: str) -> None:
    """Show a step without doing the earlier steps' work (nothing launched)."""
    screen = pilot.app.wizard_screen()
    screen._show([s.STEP_ID for s in screen.steps].index(step_id))
    await pilot.pause()


# ------------------------------------------------------------------ snapshots


@pytest.fixture
def masked_timings(monkeypatch):
    monkeypatch.setattr(prompt_metrics, "timing", lambda s: "-" if s is None else "▒▒ ms")


def test_one_answer_small(snap_compare, masked_timings):
    async def run_before(pilot):
        await reach(pilot, "test")
        await _send(pilot, WHO)
        await _answered(pilot, 1)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


def test_two_answers_large(snap_compare, masked_timings):
    async def run_before(pilot):
        await reach(pilot, "test")
        await _send(pilot, WHO)
        await _answered(pilot, 1)
        await _send(pilot, "Hello")
        await _answered(pilot, 2)
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=run_before)


def test_nothing_running_small(snap_compare):
    async def run_before(pilot):
        await _show_step(pilot, "test")

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


# ------------------------------------------------------------------ Pilot


async def test_prompt_streams_answer_keeps_history_and_recalls(tmp_path):
    """60 ms per token: the 30-token answer takes ~2 s, long enough to see it stream and to
    try a second prompt while the first is in flight."""
    pieces: dict[int, PromptStep.Streamed] = {}      # each message once (the hook sees it bubble)
    app = demo_app(spec=_spec(tmp_path, all={"token_delay_ms": 60}))

    def hook(message) -> None:
        if isinstance(message, PromptStep.Streamed):
            pieces.setdefault(id(message), message)

    async with app.run_test(size=(80, 24), message_hook=hook) as pilot:
        await reach(pilot, "test")
        step, answer = _step(app), app.screen.query_one(AnswerView)
        assert not step.query_one("#prompt-send", Button).disabled
        await _send(pilot, WHO)
        await wait_for(pilot, lambda: "SIMULATED" in answer.answer and step.sending, timeout=30,
                       what="part of the answer while the request is in flight")
        await _send(pilot, "Hello")                      # refused: the first is still in flight
        assert step.sending
        await _answered(pilot, 1)
        assert len(app.wizard.history) == 1
        assert any("in flight" in n.message for n in app._notifications)

        first, streamed = app.wizard.history[0], [m.text for m in pieces.values()]
        assert first.ok and len(streamed) > 1 and "".join(streamed) == first.result.text
        text = screen_text(app)
        assert "I am a SIMULATED" in text
        assert "served by p1-prefill-0 -> d1-decode-0" in text and "kv: forwarded" in text
        assert f"TTFT {prompt_metrics.timing(first.result.ttft_s)}" in text
        assert f"TPOT {prompt_metrics.timing(first.result.tpot_s)}" in text
        assert re.search(r"TTFT \d+(\.\d)? ms", text), text

        assert step.query_one("#prompt-input", Input).value == "Hello"   # kept when refused
        await pilot.press("enter")
        await _answered(pilot, 2)
        second = app.wizard.history[1]
        assert "served by p1-prefill-0 -> d2-decode-0" in screen_text(app)
        assert second.result.text.strip() in answer.answer.strip()

        history = app.screen.query_one(PromptHistory)
        history.focus()
        await pilot.press("up")                          # back to the first prompt
        await wait_for(pilot, lambda: "I am a SIMULATED" in answer.answer, what="the first answer again")
        text = screen_text(app)
        assert f"› {WHO}" in text and "served by p1-prefill-0 -> d1-decode-0" in text

        field = step.query_one("#prompt-input", Input)
        field.focus()
        await pilot.press("up")
        assert field.value == "Hello"
        await pilot.press("up")
        assert field.value == WHO
        await pilot.press("down", "down")
        assert field.value == ""

        report = await app.wizard.stop()
        assert report.ok and not app.wizard.running


async def test_empty_answer_and_kv_recompute_are_problems_and_ctrl_r_resends(tmp_path):
    """d1 cannot pull KV (it recomputes); a prompt whose first token is EOS gets no text."""
    app = demo_app(spec=_spec(tmp_path, d1={"vllm_fault": "kv_pull_fail"}))
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "test")
        await _send(pilot, WHO)                          # served by d1: recomputed
        await _answered(pilot, 1)
        text = screen_text(app)
        assert "FAIL" in text and "KV recomputed instead of transferred on d1-decode-0" in text
        await _send(pilot, f"quiet {EOS_MARK}")          # served by d2: no text at all
        await _answered(pilot, 2)
        text = screen_text(app)
        assert "(no answer)" in text and "empty answer" in text
        history = app.screen.query_one(PromptHistory)
        assert [history.get_row_at(i)[1] for i in (0, 1)] == ["FAIL", "FAIL"]
        history.focus()
        await pilot.press("up", "ctrl+r")                # the first prompt again
        await _answered(pilot, 3)
        assert app.wizard.history[2].verify.prompt == WHO
        report = await app.wizard.stop()
        assert report.ok


async def test_nothing_running_points_to_launch_and_refuses():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _show_step(pilot, "test")
        step = _step(app)
        text = screen_text(app)
        assert "Nothing is running" in text and "step 7, Launch" in text
        assert step.query_one("#prompt-send", Button).disabled
        await _send(pilot, WHO)
        assert not step.sending and app.wizard.history == []
        assert any("launch the deployment" in n.message for n in app._notifications)
        assert "Next >" in text and "ready: Next" not in text   # the last step: nothing for Next
        assert step.blocker is None


async def test_max_tokens_is_validated_as_typed():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await _show_step(pilot, "test")
        await pilot.click("#prompt-max-tokens")
        await pilot.press("end", "ctrl+u", "0")
        await pilot.pause()
        assert "max tokens: at least 1" in screen_text(app)
        await pilot.press("end", "ctrl+u", *"6144")
        await pilot.pause()
        assert "below the model's max_model_len (6144)" in screen_text(app)
        await pilot.press("end", "ctrl+u", *"256")
        await pilot.pause()
        assert "max tokens:" not in screen_text(app)


class _AnswerApp(App):
    def compose(self) -> ComposeResult:
        yield AnswerView(id="prompt-answer")


async def test_answer_view_follows_only_at_the_bottom():
    """elia's rule: streamed text keeps the end in view, unless the reader scrolled up; back
    at the bottom, it follows again."""
    app = _AnswerApp()
    async with app.run_test(size=(40, 10)) as pilot:
        view = app.query_one(AnswerView)
        view.show("long", "", follow=True)
        for n in range(40):
            view.append(f"line {n}\n")
            if n % 7 == 0:
                await pilot.pause()                      # pieces also arrive between refreshes
        await wait_for(pilot, lambda: view.max_scroll_y > 30 and view.scroll_y == view.max_scroll_y,
                       timeout=5, what="the view following the stream to its end")
        view.focus()
        await pilot.press("home")                        # the reader goes up to read
        await wait_for(pilot, lambda: view.scroll_y == 0, timeout=5, what="the reader scrolled up")
        before = view.max_scroll_y
        view.append("more\nand more\n")
        await wait_for(pilot, lambda: view.max_scroll_y == before + 2, timeout=5, what="the new lines laid out")
        await pilot.pause()
        assert view.scroll_y == 0
        await pilot.press("end")                         # back at the bottom: following again
        view.append("the end\n")
        await wait_for(pilot, lambda: view.max_scroll_y == before + 3 and view.scroll_y == view.max_scroll_y,
                       timeout=5, what="following again")

"""Step 7, Launch, on the demo's SIMULATED cluster: launch, per-process states, live log panes
(follow, pause, filter), Stop all, restart one, a failed launch with its diagnosis; and the
log pane's bounds on its own. Snapshots: a healthy and a failed launch at 80x24 and 200x50.

The logs hold timestamps, pids and ports that change each run, and a failure's reason holds
how long the process ran: before a snapshot they are masked (the panes and the diagnosis
re-show the masked text), so the frames depend only on what the step draws.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import aiohttp
from conftest import pid_alive
from textual.app import App, ComposeResult
from tui_support import demo_app, reach, screen_text, wait_for

from pdwizard.cli import asset
from pdwizard.deploy import status_session
from pdwizard.screens.launch import LaunchStep
from pdwizard.widgets.diagnosis import DiagnosisView
from pdwizard.widgets.log_view import LogView
from pdwizard.widgets.process_table import ProcessTable

PROCESSES = ["p1-prefill-0", "d1-decode-0", "d2-decode-0", "p1-proxy-0"]
_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "YYYY-MM-DDThh:mm:ssZ"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+"), "YYYY-MM-DD hh:mm:ss,mmm"),
    (re.compile(r"\b\d\d-\d\d \d\d:\d\d:\d\d\b"), "MM-DD hh:mm:ss"),
    (re.compile(r"pid=\d+"), "pid=N"),
    (re.compile(r"process \[\d+\]"), "process [N]"),
    (re.compile(r"127\.0\.0\.1:\d+ -"), "127.0.0.1:PORT -"),
    (re.compile(r"took \d+\.\d+ seconds"), "took N seconds"),
    (re.compile(r"after \d+\.\d s"), "after N s"),
]


def mask(text: str) -> str:
    for pattern, repl in _MASKS:
        text = pattern.sub(repl, text)
    return text


def step_of(app) -> LaunchStep:
    return app.screen.query_one(LaunchStep)


def faulty_spec(tmp_path: Path) -> Path:
    """The demo cluster with an NPU out of memory on d1; the others start slowly, so that the
    failure always comes first (the frame does not depend on who was healthy by then)."""
    blocks = asset("demo-cluster.toml").read_text().split("[[node]]")
    nodes = [b.rstrip() + '\nvllm_fault = "oom"\n\n' if 'name = "d1"' in b else
             b.replace("vllm_startup_s = 2", "vllm_startup_s = 30") for b in blocks[1:]]
    path = tmp_path / "demo-oom.toml"
    path.write_text("[[node]]".join([blocks[0], *nodes]))
    return path


async def launched(pilot, *, ok: bool = True) -> LaunchStep:
    """Reach the step, press l, wait until the launch is over (all healthy, or failed)."""
    await reach(pilot, "launch")
    step = step_of(pilot.app)
    assert step.blocker == "launch the deployment (l)"
    await pilot.press("l")
    await wait_for(pilot, lambda: step.phase is None and pilot.app.wizard.launch_result is not None,
                   60, "the launch to end")
    assert pilot.app.wizard.launch_result.ok is ok, pilot.app.wizard.launch_result.lines()
    return step


async def quiet_logs(pilot, step: LaunchStep) -> None:
    """Wait until each vLLM pane shows its start-up to the end (its /health answered)."""
    def done() -> bool:
        return all(any('"GET /health HTTP/1.1" 200' in ln for ln in step.views[n].kept) for n in PROCESSES[:3])

    await wait_for(pilot, done, 20, "the start-up lines in every pane")


async def masked(pilot) -> None:
    """Re-show the panes and the diagnosis with what changes between runs masked."""
    step = step_of(pilot.app)
    for view in step.query(LogView):
        view.reset([mask(ln) for ln in view.kept])
    diagnosis = step.query_one(DiagnosisView)
    if diagnosis.failures:
        diagnosis.show([dataclasses.replace(f, reason=mask(f.reason), log_tail=[mask(ln) for ln in f.log_tail],
                                            diagnoses=[dataclasses.replace(d, line=mask(d.line))
                                                       for d in f.diagnoses])
                        for f in diagnosis.failures], diagnosis.note)
    view = step.active_view()
    await wait_for(pilot, lambda: view.virtual_size.width > 0 and view.unseen == 0, 10, "the pane redrawn")
    pilot.app.clear_notifications()
    await pilot.pause()


async def nothing_runs(app) -> bool:
    state = await status_session(app.wizard.pool, app.wizard.session())
    return not state.running


# ---------------------------------------------------------------- Pilot


async def test_launch_follows_every_log_then_stop_all_leaves_nothing() -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await launched(pilot)
        assert app.wizard.running and step.blocker is None
        assert [(r.name, r.state) for r in step.board.rows.values()] == [(n, "healthy") for n in PROCESSES]
        assert {r.pid for r in step.board.rows.values()} == {p.pid for p in app.wizard.launch_result.processes.values()}
        await quiet_logs(pilot, step)
        prefill = step.views["p1-prefill-0"]
        assert any("Application startup complete. [SIMULATED]" in ln for ln in prefill.lines)
        assert any("[SIMULATED]" in ln for ln in step.views["d2-decode-0"].kept)
        assert "ready" in screen_text(app) and "● healthy" in screen_text(app)
        events = step.query_one("#launch-events", LogView).kept
        assert any(e.startswith("started d1-decode-0 (decode d1:13700) pid ") for e in events)

        # pause: new lines are counted, not shown; resume shows them
        assert step.active_view() is prefill
        await pilot.press("p")
        assert prefill.paused and "PAUSED" in prefill.border_subtitle
        shown = prefill.line_count
        host = app.wizard.plan.processes[0].health_host
        async with aiohttp.ClientSession() as client:
            async with client.post(f"http://{host}:13700/sim/log", json={"lines_per_s": 400, "seconds": 0.5}) as r:
                assert r.status == 202
        # 201 lines: the request's access line, then the 200 of the burst
        await wait_for(pilot, lambda: "+201 lines" in prefill.border_subtitle, 10, "201 lines counted while paused")
        assert prefill.line_count == shown and prefill.unseen == 201
        await pilot.press("p")
        assert not prefill.paused
        await wait_for(pilot, lambda: prefill.line_count == shown + 201, 5, "the held lines shown")
        assert "burst line 0000200/0000200" in prefill.lines[-1]
        assert prefill.scroll_y == prefill.max_scroll_y  # following again

        # filter: only the matching lines, highlighted; escape brings every line back
        await pilot.press("slash")
        await pilot.press(*"route")
        await wait_for(pilot, lambda: prefill.term == "route", 5, "the filter")
        assert prefill.line_count == 9 and all("route" in ln.lower() for ln in prefill.lines)
        assert "filter 'route': 9 shown" in prefill.border_subtitle
        await pilot.press("escape")
        assert prefill.term == "" and prefill.line_count == shown + 201

        await pilot.press("s")
        await wait_for(pilot, lambda: step.phase is None and not app.wizard.running, 30, "the stop")
        assert [r.state for r in step.board.rows.values()] == ["stopped"] * 4
        assert step.blocker == "launch the deployment (l)"
        assert await nothing_runs(app)
        assert not any(pid_alive(p.pid) for p in app.wizard.launch_result.processes.values())


async def test_restart_one_brings_the_highlighted_process_back() -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await launched(pilot)
        before = {n: p.pid for n, p in app.wizard.launch_result.processes.items()}
        table = step.query_one(ProcessTable)
        table.focus()
        await pilot.press("down")
        assert table.highlighted == "d1-decode-0"
        assert step.active_view() is step.views["d1-decode-0"]  # the pane follows the table
        await pilot.press("R")
        await wait_for(pilot, lambda: step.phase is not None, 5, "the restart to begin")
        assert step.blocker == "restarting d1-decode-0"
        await wait_for(pilot, lambda: step.phase is None, 60, "the restart to end")
        after = {n: p.pid for n, p in app.wizard.launch_result.processes.items()}
        assert after["d1-decode-0"] != before["d1-decode-0"]
        assert {n: p for n, p in after.items() if n != "d1-decode-0"} == \
            {n: p for n, p in before.items() if n != "d1-decode-0"}
        assert step.board.rows["d1-decode-0"].pid == after["d1-decode-0"]
        assert step.board.all_healthy() and step.blocker is None and app.wizard.running
        # its pane kept following the same log: the second start-up is there
        await wait_for(pilot, lambda: sum("Application startup complete" in ln
                                          for ln in step.views["d1-decode-0"].kept) == 2, 10, "the restart's lines")


async def test_a_failed_launch_shows_the_diagnosis_and_what_was_stopped(tmp_path: Path) -> None:
    app = demo_app(spec=faulty_spec(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await launched(pilot, ok=False)
        states = {r.name: r.state for r in step.board.rows.values()}
        assert states == {"p1-prefill-0": "stopped", "d1-decode-0": "failed", "d2-decode-0": "stopped",
                          "p1-proxy-0": "stopped"}
        assert step.board.rows["d1-decode-0"].note == "exit 1 · npu_out_of_memory"
        assert step.blocker == "the launch failed: d1-decode-0 npu_out_of_memory (fix and launch again)"
        diagnosis = step.query_one(DiagnosisView)
        assert diagnosis.has_class("-shown") and diagnosis.failures[0].process == "d1-decode-0"
        assert "stopped by the cleanup" in diagnosis.note
        text = screen_text(app)
        assert "npu_out_of_memory" in text and "FAILED" in text
        assert step.active_view() is step.views["d1-decode-0"]  # the failed process's log is shown
        assert not app.wizard.running and await nothing_runs(app)
        await pilot.press("R")  # nothing runs: refused
        assert step.phase is None


async def test_a_log_pane_stays_bounded_and_holds_still_while_scrolled_up() -> None:
    class One(App):
        def compose(self) -> ComposeResult:
            yield LogView(max_lines=100)

    app = One()
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        view.push_lines(f"line {i}" for i in range(1, 5001))
        await wait_for(pilot, lambda: view.line_count == 100, 5, "the first flush")
        assert view.lines[0] == "line 4901" and view.lines[-1] == "line 5000"
        assert view.received == 5000 and len(view.kept) == 100
        assert "5,000 lines" in view.border_subtitle and "last 100 kept" in view.border_subtitle
        view.scroll_home(animate=False, immediate=True)
        view.push_lines(f"more {i}" for i in range(1, 31))
        await wait_for(pilot, lambda: "+30 lines below" in view.border_subtitle, 5, "the +N marker")
        assert view.lines[-1] == "line 5000" and view.scroll_y == 0  # held still
        view.scroll_end(animate=False, immediate=True)
        await wait_for(pilot, lambda: view.lines[-1] == "more 30", 5, "catching up at the bottom")
        assert view.line_count == 100 and view.unseen == 0
        # far more than it keeps while held: it redraws the last 100 when it follows again
        view.toggle_pause()
        view.push_lines(f"flood {i}" for i in range(1, 1001))
        await pilot.pause(0.2)
        assert view.lines[-1] == "more 30" and view.unseen == 1000
        view.toggle_pause()
        assert view.lines[0] == "flood 901" and view.lines[-1] == "flood 1000" and view.line_count == 100


# ---------------------------------------------------------------- snapshots


async def _healthy(pilot) -> None:
    step = await launched(pilot)
    await quiet_logs(pilot, step)
    await masked(pilot)


async def _failed(pilot) -> None:
    step = await launched(pilot, ok=False)
    d1 = step.views["d1-decode-0"]
    await wait_for(pilot, lambda: any("=== pdwizard: d1-decode-0 exited" in ln for ln in d1.kept), 20,
                   "the failed process's last line")
    await masked(pilot)


def test_snapshot_healthy_launch_80x24(snap_compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_healthy)


def test_snapshot_healthy_launch_200x50(snap_compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_healthy)


def test_snapshot_failed_launch_80x24(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(demo_app(spec=faulty_spec(tmp_path)), terminal_size=(80, 24), run_before=_failed)


def test_snapshot_failed_launch_200x50(snap_compare, tmp_path: Path) -> None:
    assert snap_compare(demo_app(spec=faulty_spec(tmp_path)), terminal_size=(200, 50), run_before=_failed)

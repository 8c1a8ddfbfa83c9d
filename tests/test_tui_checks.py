"""Step 4, Fabric checks: the node x NPU x check table filling in live, the ping matrix, any
cell's details with the hint and raw output, re-running only what failed; snapshots at 80x24
and 200x50, all green and with a failing fabric check (the demo SIMULATED cluster)."""

from __future__ import annotations

import re
from pathlib import Path

from pdwizard.cli import asset
from pdwizard.report import Status
from pdwizard.screens.checks import ChecksStep
from pdwizard.widgets.check_table import COLUMNS, CheckDetails, CheckTable
from pdwizard.widgets.ping_matrix import PingMatrix
from tui_support import demo_app, reach, screen_text, wait_for

ROWS = ["p1", "p1:0", "p1:1", "d1", "d1:6", "d1:7", "d2", "d2:6", "d2:7"]
NODE_COLUMNS = ["node_ip", "nic", "versions"]
NPU_COLUMNS = [c for c in COLUMNS if c not in NODE_COLUMNS]
_CALL = re.compile(r'^pdw_call \S+ "\$HCCN_TOOL" -i (\d+) -(\w+) -g(?: address (\S+))?$')


def faulty_spec(tmp_path: Path, **faults: str) -> Path:
    """The demo cluster with a `key = value` line set on nodes: faulty_spec(p, d2='link_down = [7]')."""
    blocks = asset("demo-cluster.toml").read_text().split("[[node]]\n")
    for node, line in faults.items():
        at = next(i for i, b in enumerate(blocks) if f'name = "{node}"\n' in b)
        key = line.split("=")[0].strip()
        kept = [x for x in blocks[at].splitlines() if x.split("=")[0].strip() != key]
        blocks[at] = "\n".join(kept + [line]) + "\n"
    path = tmp_path / "cluster.toml"
    path.write_text("[[node]]\n".join(blocks))
    return path


def checks(app) -> ChecksStep:
    return app.wizard_screen().query_one(ChecksStep)


def cell(app, row: str, check: str) -> str:
    return str(app.wizard_screen().query_one(CheckTable).get_cell(row, check))


def details(app) -> str:
    return app.wizard_screen().query_one(CheckDetails).plain


async def checks_done(pilot) -> ChecksStep:
    """Show the checks step (connected and discovered through the core) and wait for its run."""
    await reach(pilot, "checks")
    step = checks(pilot.app)
    await wait_for(pilot, lambda: not step.running and pilot.app.wizard.fabric_step is not None, 60,
                   "the checks to finish")
    return step


async def select(pilot, row: str, check: str, grid=CheckTable) -> None:
    """Put the cursor on a cell and press enter (what an operator does)."""
    table = pilot.app.wizard_screen().query_one(grid)
    table.focus()
    table.move_cursor(row=table.get_row_index(row), column=table.get_column_index(check))
    await pilot.press("enter")
    await pilot.pause()


async def click(pilot, row: str, check: str) -> None:
    """Click a cell of the check table (the table is scrolled to its top)."""
    table = pilot.app.wizard_screen().query_one(CheckTable)
    column = table.get_column_index(check)
    x = sum(c.get_render_width(table) for c in table.ordered_columns[:column]) + 1
    assert await pilot.click(CheckTable, offset=(x, 1 + table.get_row_index(row)))
    await pilot.pause()


def hccn_calls(results) -> list[tuple[str, int, str, str | None]]:
    """(node, device, option, address) of every hccn_tool call in the scripts that ran."""
    out = []
    for r in results:
        for line in (r.stdin or "").splitlines():
            m = _CALL.match(line)
            if m:
                out.append((r.node, int(m.group(1)), m.group(2), m.group(3)))
    return sorted(out)


def record_commands(app) -> list:
    """Every remote command from now on (the command log still hears them)."""
    seen: list = []
    shown = app.wizard.on_command

    def both(result) -> None:
        seen.append(result)
        shown(result)

    app.wizard.on_command = both
    return seen


# ---------------------------------------------------------------- Pilot


async def test_demo_all_green_every_node_and_npu_checked_and_next_goes_on():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        table = app.wizard_screen().query_one(CheckTable)
        assert [str(r.key.value) for r in table.ordered_rows] == ROWS
        for row in ROWS:
            mine = NODE_COLUMNS if ":" not in row else NPU_COLUMNS
            assert [cell(app, row, c) for c in mine] == ["ok"] * len(mine), row
            assert cell(app, row, "all") == "ok"
        assert step.blocker is None
        text = screen_text(app)
        assert "done: 102 ok, 0 warn, 0 failed" in text and "ready: Next" in text
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.wizard_screen().current.STEP_ID == "model"


async def test_results_fill_in_per_node_as_they_arrive(tmp_path):
    """d2's tools are slow: p1's verdicts are in while d2's cells still wait, Next is blocked
    meanwhile, and the per-node progress line says what each node is doing."""
    app = demo_app(spec=faulty_spec(tmp_path, d2="tool_delay_ms = 80"))
    async with app.run_test(size=(80, 24)) as pilot:
        await reach(pilot, "checks")
        step = checks(app)
        await wait_for(pilot, lambda: cell(app, "p1:0", "link") == "ok", 30, "p1's verdicts")
        assert cell(app, "d2:6", "link") == "…" and step.running
        assert step.blocker == "checks running"
        assert re.search(r"d2 +checking \(one round trip\)", screen_text(app))
        await wait_for(pilot, lambda: not step.running, 60, "the checks to finish")
        assert cell(app, "d2:6", "link") == "ok" and step.blocker is None


async def test_failing_link_shows_fail_hint_and_raw_output_and_blocks_next(tmp_path):
    app = demo_app(spec=faulty_spec(tmp_path, d2="link_down = [7]"))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        assert cell(app, "d2:7", "link") == "FAIL" and cell(app, "d2:7", "all") == "FAIL"
        assert cell(app, "d2:6", "link") == "ok" and cell(app, "p1:0", "ping") == "FAIL"
        failed = app.wizard.failed_checks()
        assert step.blocker == f"{len(failed)} failed: fix, re-run (f)"
        await select(pilot, "d2:7", "link")
        assert app.wizard_screen().query_one(CheckDetails).has_class("-open")
        shown = details(app)
        assert "FAIL link d2 NPU 7" in shown
        assert "hint: Check the cable and the switch port; run `hccn_tool -i 7 -link -g` on d2." in shown
        assert "raw output:\nlink status: DOWN" in shown
        assert "hint: Check the cable" in screen_text(app)
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.wizard_screen().current.STEP_ID == "checks"
        await pilot.press("escape")
        await pilot.pause()
        assert not app.wizard_screen().query_one(CheckDetails).has_class("-open")
        await click(pilot, "d2:7", "net_health")                         # a click opens the details too
        assert app.wizard_screen().query_one(CheckDetails).has_class("-open")
        assert "FAIL net_health d2 NPU 7" in details(app) and "value: Fault" in details(app)


async def test_ping_matrix_grid_and_a_failed_ping_on_select(tmp_path):
    app = demo_app(spec=faulty_spec(tmp_path, p1='ping_loss = ["29.0.2.7"]'))
    async with app.run_test(size=(80, 24)) as pilot:
        await checks_done(pilot)
        await pilot.press("m")
        await pilot.pause()
        text = screen_text(app)
        assert "ping matrix: 24 pings over 3 nodes, at most 8 per node" in text
        matrix = app.wizard_screen().query_one(PingMatrix)
        assert matrix.has_focus and not app.wizard_screen().query_one(CheckTable).is_on_screen
        grid = {(str(r.key.value), str(c.key.value)): str(matrix.get_cell(r.key, c.key))
                for r in matrix.ordered_rows for c in matrix.ordered_columns if c.key.value != "src"}
        assert grid[("p1:0", "d1:6")] == "FAIL" and grid[("p1:1", "d1:6")] == "FAIL"
        assert grid[("p1:0", "p1:1")] == "-"                                # same node: never pinged
        assert sum(v == "ok" for v in grid.values()) == 22
        await select(pilot, "p1:0", "d1:6", grid=PingMatrix)
        shown = details(app)
        assert "ping p1:0 -> d1:6" in shown and "FAIL ping p1 NPU 0 -> 29.0.2.7 (d1 NPU 6)" in shown
        assert "3 packets transmitted, 0 received, 100.00% packet loss" in shown


async def test_rerun_failed_runs_only_the_failed_pings(tmp_path):
    """f re-runs the two failed pings only (one script, on p1, two calls): the simulated fault
    cannot be cleared at run time, so they fail again and replace the old verdicts."""
    app = demo_app(spec=faulty_spec(tmp_path, p1='ping_loss = ["29.0.2.7"]'))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        old = app.wizard.failed_checks()
        assert len(old) == 2
        seen = record_commands(app)
        await pilot.press("f")
        await wait_for(pilot, lambda: not step.running, 60, "the re-run")
        assert [r.node for r in seen] == ["p1"]
        assert hccn_calls(seen) == [("p1", 0, "ping", "29.0.2.7"), ("p1", 1, "ping", "29.0.2.7")]
        new = app.wizard.failed_checks()
        assert len(new) == 2 and not {id(r) for r in new} & {id(r) for r in old}
        assert cell(app, "p1:0", "ping") == "FAIL" and step.blocker == "2 failed: fix, re-run (f)"


async def test_rerun_failed_of_a_discovery_verdict_discovers_again(tmp_path):
    """busy_first = 5: p1's tool answers "busy" to discovery's first five calls, so NPU 0's
    address is missing (a transient fault, gone once those calls are spent). f discovers p1
    again, finds it, and since the ping plan changed runs the fabric checks in full: all green."""
    app = demo_app(spec=faulty_spec(tmp_path, p1="busy_first = 5"))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        assert cell(app, "p1:0", "ip") == "FAIL" and step.blocker == "1 failed: fix, re-run (f)"
        assert cell(app, "p1:0", "ping") == ""                            # not planned: no address
        seen = record_commands(app)
        await pilot.press("f")
        await wait_for(pilot, lambda: not step.running, 60, "the re-run")
        assert "pdw_call npusmi_info" in (seen[0].stdin or "") and seen[0].node == "p1"  # p1 discovered again first
        assert cell(app, "p1:0", "ip") == "ok" and cell(app, "p1:0", "ping") == "ok"
        assert step.blocker is None
        assert all(r.status is not Status.FAIL for r in app.wizard.check_results())


async def test_rerun_all_discovers_again_and_runs_everything():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        seen = record_commands(app)
        await pilot.press("r")
        await wait_for(pilot, lambda: not step.running, 60, "the re-run")
        scripts = [("pdw_call npusmi_info" in (r.stdin or ""), r.node) for r in seen]
        assert sorted(scripts) == [(False, "d1"), (False, "d2"), (False, "p1"),
                                   (True, "d1"), (True, "d2"), (True, "p1")]
        assert cell(app, "d2:7", "link") == "ok" and step.blocker is None


async def test_entering_again_shows_the_last_results_and_reruns_after_a_change():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await checks_done(pilot)
        seen = record_commands(app)
        await pilot.press("ctrl+n", "ctrl+b")                            # to the model step and back
        await pilot.pause()
        assert app.wizard_screen().current.STEP_ID == "checks"
        assert not step.running and seen == [] and cell(app, "d1:6", "tls") == "ok"
        app.wizard.data["instances"][2]["devices"] = [4, 5]              # what the topology step does
        app.wizard.changed("instances")
        await pilot.press("ctrl+n", "ctrl+b")
        await wait_for(pilot, lambda: not step.running and app.wizard.fabric_step is not None, 60, "the new run")
        assert seen and cell(app, "d2:4", "link") == "ok" and cell(app, "d2:5", "ping") == "ok"
        table = app.wizard_screen().query_one(CheckTable)
        assert "d2:6" not in [str(r.key.value) for r in table.ordered_rows]


# ---------------------------------------------------------------- snapshots


def _shot(select_cell: tuple[str, str] | None = None, matrix: bool = False):
    async def run_before(pilot) -> None:
        await checks_done(pilot)
        if matrix:
            await pilot.press("m")
        if select_cell is not None:
            await select(pilot, *select_cell)
        await pilot.pause()
        pilot.app.clear_notifications()
    return run_before


def test_snapshot_demo_done_small(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_shot())


def test_snapshot_demo_done_large(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_shot())


def test_snapshot_failing_link_details_small(snap_compare, tmp_path):
    app = demo_app(spec=faulty_spec(tmp_path, d2="link_down = [7]"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_shot(("d2:7", "link")))


def test_snapshot_failing_link_details_large(snap_compare, tmp_path):
    app = demo_app(spec=faulty_spec(tmp_path, d2="link_down = [7]"))
    assert snap_compare(app, terminal_size=(200, 50), run_before=_shot(("d2:7", "link")))


def test_snapshot_ping_matrix_small(snap_compare, tmp_path):
    app = demo_app(spec=faulty_spec(tmp_path, d2="link_down = [7]"))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_shot(matrix=True))

"""Step 3, Topology: instances built on the NPU grid by keyboard and by mouse, risky NPUs
asked about, ports edited inline; snapshots at 80x24 and 200x50 (the demo SIMULATED cluster)."""

from __future__ import annotations

from pathlib import Path

from tui_support import demo_app, reach, screen_text, wait_for

from pdwizard.cli import asset
from pdwizard.widgets.npu_grid import NpuGrid
from pdwizard.widgets.topology_confirm import ConfirmRiskScreen

DEMO_1P2D = [{"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
             {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
             {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700}]
SUMMARY = "1P2D, 2 + 4 NPUs · TP prefill 2, decode 2"


def faulty_spec(tmp_path: Path, **faults: str) -> Path:
    """The demo cluster with TOML lines added to nodes: faulty_spec(p, d1='busy_npus = [6]')."""
    text = asset("demo-cluster.toml").read_text()
    for node, lines in faults.items():
        anchor = f'name = "{node}"\n'
        assert anchor in text
        text = text.replace(anchor, anchor + lines + "\n", 1)
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


def step(app):
    return app.wizard_screen().current


async def at_topology(pilot, *, empty: bool) -> None:
    """Show the topology step on the discovered demo (with no instances when `empty`)."""
    if empty:
        pilot.app.wizard.data["instances"] = []
    await reach(pilot, "topology")
    await wait_for(pilot, lambda: bool(pilot.app.screen.query(".npu-cell")), 10, "the NPU grid")
    await wait_for(pilot, lambda: isinstance(pilot.app.focused, NpuGrid), 5, "the grid to hold the focus")


def instances(app) -> list[dict]:
    return [{k: i[k] for k in ("role", "node", "devices", "port")} for i in app.wizard.data["instances"]]


async def test_keyboard_builds_1p2d(tmp_path: Path) -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=True)
        assert step(app).blocker == "choose at least one prefill and one decode instance"
        await pilot.press("space", "right", "space", "p")                  # p1 NPU 0, 1 -> P1
        await pilot.press("down", *["right"] * 5, "space", "right", "space", "d")   # d1 NPU 6, 7 -> D1
        await pilot.press("down", "space", "left", "space")                # d2 NPU 7, 6 ...
        assert "selected d2 NPU 6, 7 → TP 2" in screen_text(app)
        await pilot.press("d")                                             # ... -> D2
        await pilot.pause()
        assert instances(app) == DEMO_1P2D
        assert SUMMARY in screen_text(app)
        assert step(app).blocker is None
        # x removes the instance under the cursor (d2 NPU 6 serves D2)
        await pilot.press("x")
        await pilot.pause()
        assert [i["node"] for i in app.wizard.data["instances"]] == ["p1", "d1"]
        assert "1P1D, 2 + 2 NPUs" in screen_text(app)


async def test_mouse_builds_1p2d_and_removes(tmp_path: Path) -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=True)
        for row, node, role in ((0, "p1", "prefill"), (1, "d1", "decode"), (2, "d2", "decode")):
            devices = (0, 1) if role == "prefill" else (6, 7)
            for d in devices:
                assert await pilot.click(f"#npu-{row}-{d}")
            assert f"selected {node} NPU {devices[0]}, {devices[1]} → TP 2" in screen_text(app)
            assert await pilot.click(f"#make-{role}")
            await pilot.pause()
        assert instances(app) == DEMO_1P2D
        assert SUMMARY in screen_text(app)
        assert step(app).blocker is None
        # a click on D1's NPU puts the cursor there; Remove removes D1
        assert await pilot.click("#npu-1-7")
        assert await pilot.click("#remove-instance")
        await pilot.pause()
        assert [(i["node"], i["role"]) for i in app.wizard.data["instances"]] == [("p1", "prefill"), ("d2", "decode")]
        assert "1P1D, 2 + 2 NPUs" in screen_text(app)


async def test_cross_node_selection_is_refused(tmp_path: Path) -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=True)
        await pilot.click("#npu-0-3")
        await pilot.click("#npu-1-3")
        await pilot.pause()
        editor = step(app).topo
        assert (editor.selection.node, editor.selection.devices) == ("p1", [3])
        assert any("an instance runs on one node" in n.message for n in app._notifications)
        await pilot.press("escape")
        assert editor.selection.devices == [] and "select NPUs of one node" in screen_text(app)


async def test_busy_and_unhealthy_npus_need_confirmation(tmp_path: Path) -> None:
    spec = faulty_spec(tmp_path, p1="busy_npus = [2]", d1='npu_health = { "5" = "Alarm" }')
    app = demo_app(spec=spec)
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=True)
        editor = step(app).topo
        text = screen_text(app)
        assert " 2 B " in text and " 5 ! " in text
        # keyboard: space on the busy NPU asks; n leaves it unchosen
        await pilot.press("right", "right", "space")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRiskScreen), 5, "the confirmation")
        assert "p1 NPU 2: busy: held by pid" in screen_text(app)
        assert editor.selection.devices == []
        await pilot.press("n")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmRiskScreen), 5, "the dialog to close")
        assert editor.selection.devices == []
        # y chooses it knowingly; p makes it an instance
        await pilot.press("space")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRiskScreen), 5, "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: editor.selection.devices == [2], 5, "p1 NPU 2 selected")
        await pilot.press("p")
        await pilot.pause()
        assert instances(app) == [{"role": "prefill", "node": "p1", "devices": [2], "port": 13700}]
        # mouse: the unhealthy NPU asks too; Cancel leaves it
        await pilot.click("#npu-1-5")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRiskScreen), 5, "the confirmation")
        assert "d1 NPU 5: unhealthy: health Alarm" in screen_text(app)
        await pilot.click("#risk-no")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmRiskScreen), 5, "the dialog to close")
        assert editor.selection.devices == []


async def test_session_instance_on_a_busy_npu_blocks_until_accepted(tmp_path: Path) -> None:
    app = demo_app(spec=faulty_spec(tmp_path, d1="busy_npus = [6]"))
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=False)
        blocker = step(app).blocker or ""
        assert blocker.startswith("D1 on d1 NPU 6: busy: held by pid")
        assert "Next: D1 on d1 NPU 6: busy" in screen_text(app)
        assert " 6 D1!" in screen_text(app)
        await pilot.click("#npu-1-6")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmRiskScreen), 5, "the confirmation")
        await pilot.click("#risk-yes")
        await wait_for(pilot, lambda: step(app).blocker is None, 5, "the blocker to clear")
        assert instances(app) == DEMO_1P2D                  # accepted, not changed
        assert " 6 D1 " in screen_text(app)


async def test_port_is_edited_inline_with_validation(tmp_path: Path) -> None:
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await at_topology(pilot, empty=False)
        assert await pilot.click("#port-2")
        await pilot.press("end", *["backspace"] * 5, *"99999")
        await wait_for(pilot, lambda: app.wizard.data["instances"][2]["port"] == 99999, 5, "the port written")
        assert "D2 port: instances[2].port: port 99999 is out of range" in screen_text(app)
        assert (step(app).blocker or "").startswith("instances[2].port: port 99999 is out of range")
        assert app.screen.query_one("#port-2").has_class("-invalid")
        await pilot.press(*["backspace"] * 5, *"13701")
        await wait_for(pilot, lambda: step(app).blocker is None, 5, "the blocker to clear")
        assert app.wizard.data["instances"][2]["port"] == 13701
        assert "out of range" not in screen_text(app)
        assert not app.screen.query_one("#port-2").has_class("-invalid")


# ---------------------------------------------------------------------------- snapshots


def _shot(*, empty: bool = False, cursor: tuple[str, ...] = ()):
    async def run_before(pilot) -> None:
        await at_topology(pilot, empty=empty)
        if cursor:
            await pilot.press(*cursor)
        await pilot.pause()
        pilot.app.clear_notifications()
        await pilot.pause()
    return run_before


def test_snapshot_demo_80x24(snap_compare) -> None:
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_shot())


def test_snapshot_demo_200x50(snap_compare) -> None:
    # a selection being built beside the demo's instances, to show the selected mark
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_shot(cursor=("right", "right", "space")))


def test_snapshot_busy_and_unhealthy_80x24(snap_compare, tmp_path: Path) -> None:
    spec = faulty_spec(tmp_path, p1="busy_npus = [2]", d1='busy_npus = [6]\nnpu_health = { "5" = "Alarm" }')
    assert snap_compare(demo_app(spec=spec), terminal_size=(80, 24), run_before=_shot(cursor=("down", "end", "left")))

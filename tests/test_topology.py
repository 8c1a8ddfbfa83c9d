"""The topology step's core (pdwizard.topology): no Textual, no cluster."""

from __future__ import annotations

import copy

import pytest
import tomllib

from pdwizard.cli import asset
from pdwizard.report import NodeFacts, NpuFacts
from pdwizard.topology import (
    FIRST_PORT,
    CellState,
    TopologyEditor,
    labels,
    next_port,
    npu_risk,
    summary,
)
from pdwizard.wizard import Wizard

DEMO = tomllib.loads(asset("demo-session.toml").read_text())


def facts(node: str, n: int = 8, *, busy: dict[int, list[int]] | None = None,
          health: dict[int, str] | None = None, no_ip: tuple[int, ...] = ()) -> NodeFacts:
    busy, health = busy or {}, health or {}
    return NodeFacts(node=node, npus=[
        NpuFacts(device=d, npu_id=d, health=health.get(d, "OK"), hbm_used_mb=3390, hbm_total_mb=65536,
                 ip=None if d in no_ip else f"29.0.0.{d + 1}", pids=busy.get(d, []))
        for d in range(n)])


def editor(instances: list[dict] | None = None, **node_faults) -> TopologyEditor:
    data = copy.deepcopy(DEMO)
    if instances is not None:
        data["instances"] = instances
    wizard = Wizard(data)
    wizard.facts = {n: facts(n, **node_faults.get(n, {})) for n in ("p1", "d1", "d2")}
    return TopologyEditor(wizard)


def test_summary_counts_instances_npus_and_tp() -> None:
    assert summary(DEMO["instances"]) == "1P2D, 2 + 4 NPUs · TP prefill 2, decode 2"
    mixed = [{"role": "prefill", "devices": [0, 1, 2, 3]}, {"role": "prefill", "devices": [4, 5]},
             {"role": "decode", "devices": [0]}]
    assert summary(mixed) == "2P1D, 6 + 1 NPUs · TP prefill 2/4, decode 1"
    assert summary([]) == "no instances yet"
    assert labels(mixed) == ["P1", "P2", "D1"]


def test_npu_risk_names_busy_unhealthy_and_missing_ip() -> None:
    ok = NpuFacts(device=0, npu_id=0, health="OK", ip="29.0.0.1")
    assert npu_risk(ok) is None
    bad = NpuFacts(device=0, npu_id=0, health="Alarm", ip=None, pids=[42, 43])
    assert npu_risk(bad) == "busy: held by pid 42, 43; unhealthy: health Alarm; no NPU IP (hccn_tool -ip -g printed none)"


def test_next_port_is_the_first_free_on_the_node_from_13700() -> None:
    data = {"instances": [{"node": "p1", "port": 13700}, {"node": "p1", "port": 13702},
                          {"node": "d1", "port": 13701}], "proxy": {"port": 13701}}
    # p1 runs the proxy (first prefill's node: none is prefill, so only a new prefill puts it there)
    assert next_port(data, "p1") == 13701
    assert next_port(data, "p1", "prefill") == 13703          # 13701 is the proxy's, 13702 taken
    assert next_port(data, "d1") == FIRST_PORT
    assert next_port({"instances": []}, "x") == FIRST_PORT


def test_building_1p2d_from_nothing() -> None:
    ed = editor([])
    assert ed.blocker() == "choose at least one prefill and one decode instance"
    for d in (0, 1):
        assert ed.pick("p1", d).ok
    assert ed.make("prefill").ok
    for node in ("d1", "d2"):
        ed.pick(node, 7)
        ed.pick(node, 6)
        assert ed.make("decode").ok
    assert ed.instances == [{"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
                            {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
                            {"role": "decode", "node": "d2", "devices": [6, 7], "port": 13700}]
    assert ed.summary() == "1P2D, 2 + 4 NPUs · TP prefill 2, decode 2"
    assert ed.blocker() is None
    assert ed.cell("d2", 6).state is CellState.DECODE and ed.cell("d2", 6).label == "D2"


def test_colocated_instances_get_their_own_ports() -> None:
    ed = editor([])
    ed.pick("p1", 0)
    ed.make("prefill")
    ed.pick("p1", 1)
    out = ed.make("decode")
    assert out.message == "D1: decode on p1 NPU 1 (TP 1), port 13701"
    assert [i["port"] for i in ed.instances] == [13700, 13701]


def test_changes_forget_later_results() -> None:
    ed = editor([])
    ed.wizard.fabric_step = object()  # type: ignore[assignment]
    ed.pick("p1", 0)
    assert ed.wizard.fabric_step is not None       # a selection alone changes nothing yet
    ed.make("prefill")
    assert ed.wizard.fabric_step is None


def test_selection_spans_one_node() -> None:
    ed = editor([])
    ed.pick("p1", 0)
    out = ed.pick("d1", 0)
    assert not out.ok and "one node" in out.message and "p1" in out.message
    assert ed.selection.node == "p1" and ed.selection.devices == [0]
    assert ed.pick("p1", 0).ok                     # unselect: the selection is empty again
    assert ed.pick("d1", 0).ok and ed.selection.node == "d1"


def test_a_device_serving_an_instance_is_not_picked() -> None:
    ed = editor()
    out = ed.pick("p1", 0)
    assert not out.ok and out.confirm is None and "serves P1" in out.message
    assert ed.selection.devices == []


@pytest.mark.parametrize("fault, word", [({"busy": {2: [901020]}}, "busy"),
                                         ({"health": {2: "Alarm"}}, "unhealthy"),
                                         ({"no_ip": (2,)}, "no NPU IP")])
def test_a_risky_device_asks_first(fault: dict, word: str) -> None:
    ed = editor([], d1=fault)
    out = ed.pick("d1", 2)
    assert not out.ok and word in (out.confirm or "")
    assert ed.selection.devices == []               # nothing chosen before the answer
    assert ed.accept("d1", 2).ok
    assert ed.selection.devices == [2]
    assert ed.cell("d1", 2).state is CellState.SELECTED and ed.cell("d1", 2).accepted


def test_an_instance_on_a_risky_device_blocks_until_accepted() -> None:
    ed = editor(d1={"busy": {6: [901020]}})        # the demo's D1 runs on d1 NPU 6, 7
    assert ed.blocker() == ("D1 on d1 NPU 6: busy: held by pid 901020 "
                            "(select the NPU to accept it, or remove the instance)")
    assert ed.cell("d1", 6).warned
    assert ed.pick("d1", 6).confirm                 # picking it asks for the operator's word
    ed.accept("d1", 6)
    assert ed.blocker() is None
    assert ed.instances[1]["devices"] == [6, 7]     # accepting keeps the instance as it was
    # a new holder of the NPU asks again
    ed.wizard.facts["d1"] = facts("d1", busy={6: [777]})
    assert "pid 777" in (ed.blocker() or "")


def test_blocker_names_the_first_session_problem() -> None:
    ed = editor()
    ed.set_port(2, "99999")
    assert ed.blocker() == ("instances[2].port: port 99999 is out of range: expected 1..65535 "
                            "(fix: for example port = 13700)")
    assert ed.port_problems() == {2: ed.blocker()}
    ed.set_port(2, "abc")
    assert ed.instances[2]["port"] == "abc" and "expected an integer" in ed.port_problems()[2]
    ed.set_port(2, "13700")
    assert ed.instances[2]["port"] == 13700 and ed.blocker() is None


def test_blocker_names_a_device_the_node_lacks() -> None:
    ed = editor()
    ed.instances[2]["devices"] = [6, 9]
    ed.wizard.facts["d2"] = facts("d2", n=8)
    assert ed.blocker() == ("instances[2].devices: node d2 has no NPU 9 (it has: 0, 1, 2, 3, 4, 5, 6, 7) "
                            "(fix: remove the instance (x) and choose its NPUs on the grid)")


def test_remove_frees_the_devices() -> None:
    ed = editor()
    out = ed.remove_at("d1", 7)
    assert out.ok and out.message == "D1 removed: d1 NPU 6, 7 are free again"
    assert [i["node"] for i in ed.instances] == ["p1", "d2"]
    assert ed.cell("d1", 7).state is CellState.FREE
    assert not ed.remove_at("d1", 7).ok
    assert ed.blocker() is None                      # 1P1D still deploys


def test_rows_mark_every_state() -> None:
    ed = editor(d1={"busy": {2: [1]}, "health": {3: "Warning"}, "no_ip": (4,)})
    ed.wizard.facts.pop("d2")
    ed.pick("d1", 0)
    rows = {r.node: r for r in ed.rows()}
    states = [c.state for c in rows["d1"].cells]
    assert states[:8] == [CellState.SELECTED, CellState.FREE, CellState.BUSY, CellState.UNHEALTHY,
                          CellState.NO_IP, CellState.FREE, CellState.DECODE, CellState.DECODE]
    assert rows["d2"].cells == [] and "not discovered" in (rows["d2"].note or "")
    assert "busy: held by pid 1" in ed.describe("d1", 2)


def test_make_needs_a_selection_and_prune_drops_stale_ones() -> None:
    ed = editor([])
    assert not ed.make("decode").ok
    ed.pick("d1", 0)
    ed.wizard.data["nodes"] = [n for n in ed.wizard.data["nodes"] if n["name"] != "d1"]
    ed.prune()
    assert ed.selection.node is None and ed.selection.devices == []

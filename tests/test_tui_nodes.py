"""Step 2, Nodes: connect and discover in parallel with a live status, add / edit / remove
nodes with inline validation, unknown host keys asked about (and only then recorded), and
the node ip picked among what discovery found. Over real SSH to the simulator."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import asyncssh
import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pdwizard.app import PdWizardApp
from pdwizard.cli import asset
from pdwizard.messages import NodeProgress, StepBlocker
from pdwizard.screens.hostkey import HostKeyScreen
from pdwizard.screens.node_form import NodeFormScreen, RemoveNodeScreen
from pdwizard.sim import SimCluster, spec_from_dict
from pdwizard.wizard import Wizard
from tui_support import FROZEN, demo_app, screen_text, wait_for

# ---------------------------------------------------------------- helpers


class OwnClusterApp(PdWizardApp):
    """The app on a simulator the wizard knows nothing of: the session reaches its nodes like
    real servers (its own key and known_hosts file), so unknown host keys are asked about.
    The cluster starts and stops in the app's own loop (Textual runs these handlers before
    PdWizardApp's own)."""

    def __init__(self, wizard: Wizard, cluster: SimCluster) -> None:
        super().__init__(wizard, clock=FROZEN)
        self.cluster = cluster

    async def on_mount(self) -> None:
        await self.cluster.start()

    async def on_unmount(self) -> None:
        await self.wizard.close()
        await self.cluster.stop()


def own_cluster_app(tmp_path: Path, names: list[str], known_hosts: str) -> OwnClusterApp:
    """Nodes `names` on 127.0.1.x:2222 with fixed host keys (stable fingerprints for the
    snapshots); the session's [ssh] points at the simulator's client key and `known_hosts`."""
    nodes = [{"name": n, "host": f"127.0.1.{i + 1}", "port": 2222, "ip": f"192.0.0.{i + 1}"}
             for i, n in enumerate(names)]
    cluster = SimCluster(spec_from_dict({"node": nodes}, source="test"), workdir=tmp_path / "sim")
    for i, node in enumerate(cluster.nodes):
        node.host_key_path.parent.mkdir(parents=True, exist_ok=True)
        node.host_key_path.write_bytes(Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()))
    data = {"schema_version": 1, "name": "hostkeys", "nodes": nodes, "instances": [], "model": {},
            "ssh": {"user": "root", "identity_file": str(cluster.client_key_path), "known_hosts": known_hosts}}
    return OwnClusterApp(Wizard(data), cluster)


def fingerprint(cluster: SimCluster, node: str) -> str:
    """The node's real host key fingerprint, read from the key the simulator serves."""
    return asyncssh.read_private_key(str(cluster.node(node).host_key_path)).get_fingerprint("sha256")


def nodes_step(app: PdWizardApp):
    return app.wizard_screen().current


async def enter_nodes(pilot) -> Any:
    """From the Session step, Next: the nodes connect on their own."""
    await pilot.press("ctrl+n")
    step = nodes_step(pilot.app)
    assert step.STEP_ID == "nodes"
    return step


async def discovered(pilot) -> Any:
    step = await enter_nodes(pilot)
    await wait_for(pilot, lambda: not step.runs and step.blocker is None, 30, "every node discovered")
    return step


def demo_copy(tmp_path: Path, edit) -> Path:
    """The demo session with `edit(data)` applied, written into tmp_path."""
    data = tomllib.loads(asset("demo-session.toml").read_text())
    edit(data)
    path = tmp_path / "session.toml"
    path.write_text(tomli_w.dumps(data))
    return path


async def type_into(pilot, selector: str, text: str) -> None:
    field = pilot.app.screen.query_one(selector)
    field.value = ""
    field.focus()
    await pilot.press(*text)


# ---------------------------------------------------------------- Pilot tests


async def test_demo_connects_every_node_with_live_status_and_unblocks_next():
    heard: list[Any] = []
    app = demo_app()
    async with app.run_test(size=(80, 24), message_hook=heard.append) as pilot:
        await discovered(pilot)
        text = screen_text(app)
        for i, node in enumerate(("p1", "d1", "d2"), 1):
            assert f"{node}    127.0.1.{i}  discovered  A2   8    192.0.0.{i}  eth0" in text, text
            said = [m.text.split(" (")[0] for m in heard if isinstance(m, NodeProgress) and m.node == node]
            assert said[0] == "connecting" and said[-1].startswith("discovered A2 with 8 NPUs"), said
            assert "discovering" in said
        blockers = [m.blocker for m in heard if isinstance(m, StepBlocker) and m.step_id == "nodes"]
        assert blockers[-1] is None and any(b and "connecting" in b for b in blockers), blockers
        assert "3/3 discovered" in text and "NICs lo 127.0.0.1, eth0 192.0.0.1" in text
        assert " 0    OK      3.3/64 GB  29.0.1.1  free" in text
        await pilot.press("ctrl+n")
        assert app.wizard_screen().current.STEP_ID == "topology"
        assert app.wizard.data["nodes"][0]["ip"] == "192.0.0.1" and app.wizard.data["nodes"][0]["nic"] == "eth0"


async def test_add_node_with_an_invalid_host_shows_the_error_and_cannot_be_saved():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await discovered(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeFormScreen), 5, "the node form")
        await type_into(pilot, "#node-host", "bad host!")
        form = app.screen
        assert "host: host must be a host name or IP address without" in screen_text(app)
        assert form.query_one("#save").disabled
        await pilot.press("enter")
        assert app.screen is form and len(app.wizard.data["nodes"]) == 3
        await type_into(pilot, "#node-host", "127.0.1.9")
        await type_into(pilot, "#node-port", "1")
        assert "host must be" not in screen_text(app) and not form.query_one("#save").disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is not form, 5, "the form to close")
        assert app.wizard.data["nodes"][-1] == {"name": "node4", "host": "127.0.1.9", "port": 1}
        await wait_for(pilot, lambda: not step.runs and "node4" in app.wizard.connect_errors, 30, "node4 tried")
        assert app.wizard.connect_errors["node4"].kind == "refused"
        assert step.blocker == "node node4 is not connected"
        assert re.search(r"node4\s+127\.0\.1\.9\s+refused", screen_text(app))


async def test_edit_renames_a_node_keeping_its_instances_and_remove_asks_first():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        step = await discovered(pilot)
        await pilot.press("down", "down", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeFormScreen), 5, "the node form")
        assert app.screen.query_one("#node-name").value == "d2"
        await type_into(pilot, "#node-name", "d9")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not isinstance(app.screen, NodeFormScreen), 5, "the form to close")
        w = app.wizard
        assert [n["name"] for n in w.data["nodes"]] == ["p1", "d1", "d9"]
        assert [i["node"] for i in w.data["instances"]] == ["p1", "d1", "d9"]
        await wait_for(pilot, lambda: not step.runs and "d9" in w.facts, 30, "d9 discovered")
        assert step.blocker is None and "d9    127.0.1.3  discovered" in screen_text(app)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, RemoveNodeScreen), 5, "the remove question")
        assert "Remove node d9 and the 1 instance(s) placed on it" in screen_text(app)
        await pilot.press("escape")
        assert len(w.data["nodes"]) == 3
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, RemoveNodeScreen), 5, "the remove question")
        await pilot.click("#remove")
        await wait_for(pilot, lambda: len(w.data["nodes"]) == 2, 5, "d9 removed")
        assert [i["node"] for i in w.data["instances"]] == ["p1", "d1"] and "d9" not in w.facts
        assert "d9" not in screen_text(app) and step.query_one("#nodes-table").row_count == 2


async def test_an_invalid_entry_blocks_connecting_until_it_is_fixed(tmp_path):
    app = demo_app(session=demo_copy(tmp_path, lambda d: d["nodes"][2].update(host="bad host")))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        await pilot.pause()
        assert step.blocker == "node d2: fix host" and not step.runs and app.wizard.connect_errors == {}
        await pilot.press("down", "down", "e")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeFormScreen), 5, "the node form")
        await type_into(pilot, "#node-host", "127.0.1.3")
        await pilot.press("enter")
        await wait_for(pilot, lambda: not step.runs and step.blocker is None, 30, "every node discovered")
        assert set(app.wizard.facts) == {"p1", "d1", "d2"}


async def test_unknown_host_key_is_asked_about_and_recorded_only_when_trusted(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    app = own_cluster_app(tmp_path, ["p1", "d1"], str(known_hosts))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen) and app.screen.node == "p1", 30,
                       "the question about p1's key")
        text = screen_text(app)
        assert fingerprint(app.cluster, "p1") in text and "known_hosts" in text
        assert str(known_hosts) in str(app.screen.query_one("#hostkey-facts").render())
        assert known_hosts.read_text() == ""
        assert step.blocker == "node p1: trust its host key?"
        await pilot.click("#trust")
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen) and app.screen.node == "d1", 30,
                       "the question about d1's key")
        assert fingerprint(app.cluster, "d1") in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not step.runs, 30, "the connect worker to end")
        assert known_hosts.read_text() == app.cluster.node("p1").known_hosts_line + "\n"
        assert "p1" in app.wizard.facts and "d1" not in app.wizard.facts
        assert step.blocker == "node d1 is not connected"
        text = screen_text(app)
        assert "p1    127.0.1.1  discovered" in text and "d1    127.0.1.2  key unknown" in text


async def test_a_node_behind_a_bastion_asks_about_each_unknown_key_once(tmp_path):
    """d1 is reached through p1: once p1's key is trusted (as a node), d1's own key is asked
    about, never p1's again and never d1's without showing it."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    app = own_cluster_app(tmp_path, ["p1", "d1"], str(known_hosts))
    app.wizard.data["nodes"][1]["jump"] = "root@127.0.1.1:2222"
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        shown = []
        for node in ("p1", "d1"):
            await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen) and app.screen.node == node, 30,
                           f"the question about {node}")
            shown.append(app.screen.error.fingerprint)
            await pilot.press("t")
        await wait_for(pilot, lambda: not step.runs, 30, "the connect worker to end")
        assert shown == [fingerprint(app.cluster, "p1"), fingerprint(app.cluster, "d1")]
        assert known_hosts.read_text().splitlines() == [app.cluster.node(n).known_hosts_line for n in ("p1", "d1")]
        assert set(app.wizard.facts) == {"p1", "d1"} and step.blocker is None
        assert "d1 root@127.0.1.2:2222 via root@127.0.1.1:2222" in str(step.query_one("#node-head").render())


async def test_rejecting_an_unknown_host_key_records_nothing(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    app = own_cluster_app(tmp_path, ["p1"], str(known_hosts))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        await wait_for(pilot, lambda: isinstance(app.screen, HostKeyScreen), 30, "the host key question")
        assert app.screen.focused.id == "reject"
        await pilot.press("enter")
        await wait_for(pilot, lambda: not step.runs, 30, "the connect worker to end")
        assert known_hosts.read_text() == "" and app.wizard.facts == {}
        assert app.wizard.connect_errors["p1"].kind == "host_key_unknown"
        assert step.blocker == "node p1 is not connected"
        assert "key unknown" in screen_text(app)
        note = str(step.query_one("#node-note").render())
        assert f"verify {fingerprint(app.cluster, 'p1')} out of band" in note and str(known_hosts) in note


async def test_a_changed_host_key_is_shown_never_offered(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    other = Ed25519PrivateKey.from_private_bytes(bytes([99]) * 32).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    known_hosts.write_text(f"[127.0.1.1]:2222 {other}\n")
    app = own_cluster_app(tmp_path, ["p1"], str(known_hosts))
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        await wait_for(pilot, lambda: not step.runs and "p1" in app.wizard.connect_errors, 30, "p1 tried")
        assert not isinstance(app.screen, HostKeyScreen)
        assert app.wizard.connect_errors["p1"].kind == "host_key_changed"
        assert known_hosts.read_text() == f"[127.0.1.1]:2222 {other}\n"
        assert "KEY CHANGED" in screen_text(app)
        assert "HOST KEY CHANGED for root@127.0.1.1:2222" in str(step.query_one("#node-note").render())


async def test_a_node_ip_not_on_the_node_blocks_until_the_proposal_is_confirmed(tmp_path):
    session = demo_copy(tmp_path, lambda d: d["nodes"][1].update(ip="192.0.0.99", nic="eth7"))
    app = demo_app(session=session)
    async with app.run_test(size=(80, 24)) as pilot:
        step = await enter_nodes(pilot)
        await wait_for(pilot, lambda: not step.runs and len(app.wizard.facts) == 3, 30, "every node discovered")
        assert step.blocker == "node d1: pick its node ip"
        assert "192.0.0.2?" in screen_text(app)
        await pilot.press("down")
        note = str(step.query_one("#node-note").render())
        assert "node ip 192.0.0.99 on eth7 is not on this node: 192.0.0.2 on eth0 is proposed" in note
        assert "i Confirm ip" in screen_text(app)
        app.wizard.fabric_step = object()              # a result that depended on the nodes
        await pilot.press("i")
        node = app.wizard.data["nodes"][1]
        assert (node["ip"], node["nic"]) == ("192.0.0.2", "eth0")
        assert step.blocker is None and app.wizard.fabric_step is None
        assert "192.0.0.2?" not in screen_text(app) and "i Confirm ip" not in screen_text(app)
        app.wizard.fabric_step = marker = object()     # confirming what the session says changes nothing
        assert app.wizard.pick_address("p1", "192.0.0.1", "eth0") is False and app.wizard.fabric_step is marker


async def test_picking_another_address_writes_the_node_ip_and_its_nic(tmp_path):
    spec = tmp_path / "cluster.toml"
    spec.write_text(asset("demo-cluster.toml").read_text().replace(
        'name = "d1"\n', 'name = "d1"\nextra_ips = ["10.9.0.2"]\n', 1))
    app = demo_app(spec=spec)
    async with app.run_test(size=(80, 24)) as pilot:
        step = await discovered(pilot)
        assert app.wizard.address_choices("d1") == [("192.0.0.2", "eth0"), ("10.9.0.2", "eth1")]
        await pilot.press("down")
        step.query_one("#node-ip").focus()
        await pilot.press("enter", "down", "enter")
        await wait_for(pilot, lambda: app.wizard.data["nodes"][1]["ip"] == "10.9.0.2", 5, "the pick")
        assert app.wizard.data["nodes"][1]["nic"] == "eth1" and step.blocker is None
        assert re.search(r"d1\s+127\.0\.1\.2\s+discovered\s+A2\s+8\s+10\.9\.0\.2\s+eth1", screen_text(app))


async def test_processes_holding_npus_are_shown(tmp_path):
    spec = tmp_path / "cluster.toml"
    spec.write_text(asset("demo-cluster.toml").read_text().replace(
        'name = "p1"\n', 'name = "p1"\nbusy_npus = [3]\n', 1))
    app = demo_app(spec=spec)
    async with app.run_test(size=(80, 24)) as pilot:
        await discovered(pilot)
        pids = app.wizard.facts["p1"].npu(3).pids
        assert pids, "the simulator registers a process on NPU 3"
        line = next(x for x in screen_text(app).splitlines() if " 3    OK " in x)
        assert ", ".join(map(str, pids)) in line
        assert "free" in next(x for x in screen_text(app).splitlines() if " 2    OK " in x)


# ---------------------------------------------------------------- snapshots


async def _discovered_shot(pilot) -> None:
    await discovered(pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


def test_snapshot_discovered_80x24(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=_discovered_shot)


def test_snapshot_discovered_200x50(snap_compare):
    assert snap_compare(demo_app(), terminal_size=(200, 50), run_before=_discovered_shot)


def test_snapshot_host_key_question_80x24(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                        # known_hosts as a relative path: the same in every run
    Path("known_hosts").write_text("")
    app = own_cluster_app(tmp_path, ["p1"], "known_hosts")

    async def run_before(pilot) -> None:
        await enter_nodes(pilot)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HostKeyScreen), 30, "the host key question")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_snapshot_node_form_with_an_error_80x24(snap_compare):
    async def run_before(pilot) -> None:
        await discovered(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NodeFormScreen), 5, "the node form")
        await type_into(pilot, "#node-host", "bad host!")
        pilot.app.clear_notifications()
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=(80, 24), run_before=run_before)


# ---------------------------------------------------------------- the core behind the step


def test_entry_problems_name_the_key_and_ignore_a_missing_ip():
    w = Wizard({"schema_version": 1, "name": "x", "nodes": [{"name": "a", "host": "10.0.0.1"}],
                "instances": [], "model": {}})
    assert w.node_entry_problems({"name": "b", "host": "node-b"}) == []
    [dup] = w.node_entry_problems({"name": "a", "host": "10.0.0.2"})
    assert dup.key == "nodes[1].name" and "already used by nodes[0]" in dup.message
    [port] = w.node_entry_problems({"name": "a", "host": "10.0.0.1", "port": 70000}, 0)
    assert port.key == "nodes[0].port" and port.hint

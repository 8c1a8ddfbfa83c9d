"""The wizard's Textual-free core (`pdwizard.wizard.Wizard`), over the simulator: real SSH, the
real deployment and proxy. Each test gets its own addresses (tests/simfiles.py), so these run
beside the TUI tests, which hold the demo's fixed addresses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncssh
import pytest
import tomli_w
from simfiles import guide_pair

from pdwizard import deploy
from pdwizard.cli import main
from pdwizard.errors import InputError, PdwError
from pdwizard.report import Status
from pdwizard.session import SessionError, load_session
from pdwizard.wizard import Wizard

SCRIPTS = ["p1-prefill-0.sh", "d1-decode-0.sh", "d2-decode-0.sh", "proxy.sh"]


async def _started(tmp_path: Path, **kw) -> tuple[Wizard, Path, Path]:
    spec, session = guide_pair(tmp_path, **kw)
    wizard = Wizard.open(session, sim_spec=spec)
    await wizard.start()
    return wizard, spec, session


async def _checked(wizard: Wizard) -> None:
    """What the Nodes and Fabric checks steps do before the preview."""
    assert set((await wizard.connect()).values()) == {None}
    await wizard.discover()
    await wizard.run_checks()


# ------------------------------------------------------------------ connections, checks, preview


async def test_connect_discover_checks_and_a_preview_equal_to_the_replays(tmp_path):
    wizard, spec, session = await _started(tmp_path)
    try:
        errors = await wizard.connect()
        assert errors == {"p1": None, "d1": None, "d2": None}
        facts = await wizard.discover()
        assert sorted(facts) == ["d1", "d2", "p1"]
        assert all(len(f.npus) == 8 for f in facts.values())
        step = await wizard.run_checks()
        assert step.status is Status.OK and wizard.fabric_step is step
        assert {r.node for r in wizard.check_results()} >= {"p1", "d1", "d2"}
        preview = await wizard.build_preview()
        assert preview.blocking == []
        assert list(preview.scripts) == SCRIPTS
        saved = wizard.save_scripts(tmp_path / "wizard")
    finally:
        await wizard.close()                             # frees the addresses for the replay's simulator
    out = tmp_path / "replay"
    code = await asyncio.to_thread(main, ["--sim", str(spec), "--replay", str(session), "--dry-run",
                                          "--out", str(out)])
    assert code == 0
    assert preview.artifacts is not None and preview.artifacts.ranktable is not None
    assert (out / "ranktable.json").read_text() == preview.artifacts.ranktable
    for path in saved:                                   # every script byte for byte, and the ranktable
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name
    assert sorted(p.name for p in saved) == sorted(SCRIPTS + ["ranktable.json"])


async def test_changed_instances_forget_the_checks_and_the_preview(tmp_path):
    wizard, _, _ = await _started(tmp_path)
    try:
        await _checked(wizard)
        await wizard.build_preview()
        assert wizard.fabric_step is not None and wizard.preview is not None
        wizard.changed("model")                          # the checks do not depend on the model
        assert wizard.fabric_step is not None and wizard.preview is None
        await wizard.build_preview()
        wizard.changed("instances")
        assert wizard.fabric_step is None and wizard.node_step is None and wizard.preview is None
    finally:
        await wizard.close()


async def test_targets_map_simulated_nodes_to_the_simulators_keys(tmp_path):
    spec, session = guide_pair(tmp_path)
    wizard = Wizard.open(session, sim_spec=spec)
    before = {t.name: t for t in wizard.targets()}       # no simulator yet: the session as written
    assert {t.port for t in before.values()} == {2222} and before["p1"].host.endswith(".1.1")
    await wizard.start()
    try:
        cluster = wizard.cluster
        wizard.data["nodes"].append({"name": "real", "host": "10.9.9.9"})
        targets = {t.name: t for t in wizard.targets()}
        for name in ("p1", "d1", "d2"):
            t = targets[name]
            assert t.host == before[name].host
            assert t.port == cluster.port_of(t.host, 2222)
            assert t.identity_file == str(cluster.client_key_path)
            assert t.known_hosts == str(cluster.known_hosts_path)
        real = targets["real"]                           # not a simulated address: as the session says
        assert (real.port, real.identity_file, real.known_hosts) == (2222, None, None)
    finally:
        await wizard.close()


async def test_unknown_host_key_shows_its_fingerprint_and_trust_records_it(sim_cluster_factory, tmp_path):
    cluster = await sim_cluster_factory({"name": "p1", "ip": "192.0.0.1"})
    node = cluster.nodes[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    wizard = Wizard({"schema_version": 1, "name": "keys",
                     "ssh": {"user": "root", "identity_file": str(cluster.client_key_path),
                             "known_hosts": str(known)},
                     "nodes": [{"name": "p1", "host": node.host, "port": node.port}],
                     "instances": [], "model": {}})
    try:
        error = (await wizard.connect())["p1"]
        assert error is not None and error.kind == "host_key_unknown"
        assert error.fingerprint == asyncssh.import_public_key(node.host_public_key).get_fingerprint()
        assert error.fingerprint in str(error) + (error.hint or "")
        assert known.read_text() == ""                   # nothing recorded without the operator's word
        line = await wizard.trust("p1")
        assert line.strip() in known.read_text() and node.host_public_key.split()[1] in known.read_text()
        assert (await wizard.connect())["p1"] is None
        assert wizard.connect_errors == {"p1": None}
    finally:
        await wizard.close()


# ------------------------------------------------------------------ launch, prompt, stop


async def test_launch_prompt_stop_leaves_nothing_running(tmp_path):
    wizard, _, _ = await _started(tmp_path)
    try:
        await _checked(wizard)
        await wizard.build_preview()
        with pytest.raises(PdwError, match="nothing is running"):
            await wizard.send_prompt("Who are you?")
        result = await wizard.launch()
        assert result.ok and wizard.running
        with pytest.raises(PdwError, match="a deployment is running"):
            await wizard.replace(None)
        assert wizard.running and wizard.plan is not None  # refused: the session is kept

        pieces: list[str] = []
        outcome = await wizard.send_prompt("Who are you?", max_tokens=50, on_text=pieces.append)
        r = outcome.result
        assert outcome.ok, outcome.line()
        assert "SIMULATED" in r.text and len(pieces) > 1 and "".join(pieces) == r.text
        assert outcome.served_by == "p1-prefill-0 -> d1-decode-0" and r.kv == "forwarded"
        assert r.ttft_s is not None and 0 < r.ttft_s <= r.total_s and r.tokens > 1
        assert wizard.history == [outcome]
        with pytest.raises(InputError) as empty:
            await wizard.send_prompt("   ")
        assert empty.value.key == "prompt"
        with pytest.raises(InputError) as zero:
            await wizard.send_prompt("hi", max_tokens=0)
        assert zero.value.key == "max_tokens"
        assert len(wizard.history) == 1                  # refused prompts are not history

        # edits after the launch (a new name, another served name) change neither where the
        # prompts go nor which run directories the stop reads
        wizard.data["name"] = "renamed-after-launch"
        wizard.data["model"]["served_name"] = "another-name"
        again = await wizard.send_prompt("Who are you?", max_tokens=5)
        assert again.ok, again.line()
        report = await wizard.stop()
        assert report.ok and not wizard.running
        assert sum(len(n.processes) for n in report.nodes.values()) == 4  # found under the launched name
        session = wizard.launched
        assert session is not None and session.name != wizard.data["name"]
        status = await deploy.status_session(wizard.pool, session, addresses=wizard.addresses(session))
        assert status.running == [] and status.errors == {}
        with pytest.raises(PdwError, match="nothing is running"):
            await wizard.send_prompt("Who are you?")
    finally:
        await wizard.close()


def test_max_tokens_problem_follows_the_models_length(tmp_path):
    _, session = guide_pair(tmp_path, session_extra={"model": {"path": "/model/Qwen3-30B-A3B",
                                                               "max_model_len": 4096}})
    wizard = Wizard.open(session)
    assert wizard.max_tokens_problem("100") is None
    assert wizard.max_tokens_problem("4095") is None
    assert "4096" in wizard.max_tokens_problem("4096")
    assert wizard.max_tokens_problem("0") == "at least 1"
    assert "whole number" in wizard.max_tokens_problem("ten")


# ------------------------------------------------------------------ the session file


def test_export_writes_a_file_the_replay_runs(tmp_path):
    spec, session = guide_pair(tmp_path)
    wizard = Wizard.open(session, sim_spec=spec)
    wizard.data["name"] = "exported-1p2d"
    path = wizard.export(tmp_path / "exported.toml")
    assert wizard.source == path
    assert path.read_text() == wizard.export_text()
    loaded = load_session(path)
    assert loaded.name == "exported-1p2d" and loaded == wizard.session()
    assert main(["--replay", str(path), "--sim", str(spec), "--dry-run", "--out", str(tmp_path / "run")]) == 0


def test_export_of_an_incomplete_session_names_the_key_and_writes_nothing(tmp_path):
    wizard = Wizard()
    wizard.data["nodes"] = [{"name": "p1", "host": "10.0.0.1"}]
    target = tmp_path / "half.toml"
    with pytest.raises(SessionError) as exc:
        wizard.export(target)
    assert "model.path" in exc.value.keys
    assert "model.path" in str(exc.value)
    with pytest.raises(SessionError):
        wizard.export_text()
    assert not target.exists() and wizard.source is None


def test_open_refuses_secret_keys_and_invalid_toml_naming_the_file(tmp_path):
    secret = tmp_path / "secret.toml"
    secret.write_text('schema_version = 1\nname = "s"\n[ssh]\nuser = "root"\npassword = "hunter2"\n')
    with pytest.raises(InputError) as exc:
        Wizard.open(secret)
    assert str(secret) in str(exc.value) and exc.value.key == "ssh.password"
    assert "hunter2" not in str(exc.value)

    broken = tmp_path / "broken.toml"
    broken.write_text('name = "unterminated\n')
    with pytest.raises(InputError) as exc:
        Wizard.open(broken)
    assert str(broken) in str(exc.value) and "not valid TOML" in str(exc.value)

    half = tmp_path / "half.toml"                        # incomplete is fine: the wizard completes it
    half.write_text(tomli_w.dumps({"schema_version": 1, "name": "half", "nodes": [{"name": "a", "host": "10.0.0.1"}]}))
    assert Wizard.open(half).data["nodes"][0]["name"] == "a"


def test_problems_by_prefix_and_the_checks_session(tmp_path):
    _, session = guide_pair(tmp_path)
    wizard = Wizard.open(session)
    assert wizard.problems() == []
    wizard.data["model"] = {}
    assert [p.key for p in wizard.problems("model")] == ["model.path"]
    assert wizard.problems("nodes") == []
    assert wizard.checks_session().model.path            # the checks run before the model is chosen
    wizard.data["nodes"][0]["host"] = "not a host"
    with pytest.raises(SessionError):
        wizard.checks_session()                          # only a missing model is filled in


def test_node_problems_name_the_bad_key():
    problems = Wizard().node_entry_problems({"name": "p1", "host": "bad host"})
    assert [p.key for p in problems] == ["nodes[0].host"]
    assert Wizard().node_entry_problems({"name": "p1", "host": "10.0.0.1"}) == []


def test_a_draft_never_holds_a_secret_and_leaves_no_file(tmp_path):
    wizard = Wizard({"schema_version": 1, "name": "half", "nodes": [], "instances": [], "model": {},
                     "ssh": {"password": "hunter2"}})
    target = tmp_path / "draft.toml"
    with pytest.raises(InputError) as refused:
        wizard.export_draft(target)
    assert refused.value.key == "ssh.password" and "hunter2" not in str(refused.value)
    assert list(tmp_path.iterdir()) == []

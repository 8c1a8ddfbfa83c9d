"""Ranktable from real discovery and its upload, over real SSH against the simulator.

Discovery of the guide's 1P2D (sim) must give the generator's exact file; the upload
must be atomic (rename over the target, no temp left), keep a backup only when the
content differs, report unchanged on a repeat, read back the same sha256 on every
node, and survive paths with spaces and quotes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from simfiles import guide_pair

from pdwizard.flow import CheckFlow
from pdwizard.progress import PlainProgress
from pdwizard.ranktable import build_ranktable, ranktable_json
from pdwizard.ranktable_upload import ranktable_path, upload_ranktable, upload_script
from pdwizard.remote.pool import RemotePool
from pdwizard.replay import targets_for
from pdwizard.report import Report
from pdwizard.session import load_session
from pdwizard.sim import SimCluster, load_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ranktable"


class _Quiet(PlainProgress):
    def say(self, text: str) -> None:
        pass


async def discover(session, pool) -> dict:
    flow = CheckFlow(session, pool, Report(session=session.name, started_at="test"), _Quiet())
    await flow.connect()
    await flow.discover()
    return flow.facts


@pytest.fixture
async def guide(tmp_path: Path):
    """(session, cluster, pool) for the guide's 1P2D on the simulator."""
    spec, session_path = guide_pair(tmp_path)
    session = load_session(session_path)
    async with SimCluster(load_spec(spec), workdir=tmp_path / "sim") as cluster:
        async with RemotePool(targets_for(session, cluster)) as pool:
            yield session, cluster, pool


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def homes(cluster, names=("p1", "d1", "d2")) -> dict[str, Path]:
    return {n: cluster.node(n).home for n in names}


async def test_sim_discovery_gives_the_generators_file_and_uploads_it(guide) -> None:
    session, cluster, pool = guide
    facts = await discover(session, pool)
    text = ranktable_json(build_ranktable(session, facts))
    expected = (FIXTURES / "a-1p2d-guide" / "ranktable.json").read_bytes()
    assert text.encode() == expected

    results = await upload_ranktable(pool, session, text)
    assert list(results) == ["p1", "d1", "d2"]
    for name, home in homes(cluster).items():
        r = results[name]
        target = home / ".pdwizard" / "runs" / "test-1p2d" / "ranktable.json"
        assert r.ok and r.error is None and r.changed and r.backup is None
        assert r.path == str(target)
        assert r.sha256 == r.expected_sha256 == sha(expected)
        assert target.read_bytes() == expected  # no trailing newline added by the heredoc
        assert os.listdir(target.parent) == ["ranktable.json"]  # no temp left behind
        assert oct(target.stat().st_mode & 0o777) == "0o644"
    assert len({r.sha256 for r in results.values()}) == 1


async def test_repeat_is_unchanged_and_a_change_keeps_one_backup_atomically(guide) -> None:
    session, cluster, pool = guide
    path = "~/rt/ranktable.json"  # each sim node has its own $HOME (they share this host's fs)
    targets = {n: home / "rt" / "ranktable.json" for n, home in homes(cluster).items()}
    first = '{"a": "1"}'
    results = await upload_ranktable(pool, session, first, path=path)
    assert all(r.ok and r.changed and r.backup is None for r in results.values())
    inodes = {n: t.stat().st_ino for n, t in targets.items()}

    again = await upload_ranktable(pool, session, first, path=path)
    assert [r.changed for r in again.values()] == [False, False, False]
    assert all(r.ok and r.backup is None and r.sha256 == sha(first.encode()) for r in again.values())
    for n, t in targets.items():
        assert t.stat().st_ino == inodes[n]  # untouched: not even rewritten
        assert os.listdir(t.parent) == ["ranktable.json"]

    # a reader that opened the old file keeps reading it whole: the new one is renamed in
    readers = {n: open(t, "rb") for n, t in targets.items()}
    try:
        second = '{"a": "2", "more": "' + "x" * 100000 + '"}'
        changed = await upload_ranktable(pool, session, second, path=path)
        assert all(f.read() == first.encode() for f in readers.values())
    finally:
        for f in readers.values():
            f.close()
    for n, t in targets.items():
        r = changed[n]
        assert r.ok and r.changed and r.sha256 == sha(second.encode())
        assert t.read_text() == second and t.stat().st_ino != inodes[n]
        assert r.backup is not None and r.backup.startswith(str(t) + ".bak-")
        assert Path(r.backup).read_text() == first
        assert sorted(os.listdir(t.parent)) == sorted(["ranktable.json", Path(r.backup).name])

    # a third, different upload within the same second gets its own backup name
    third = await upload_ranktable(pool, session, first, path=path)
    r = third["p1"]
    assert r.changed and r.backup != changed["p1"].backup and Path(r.backup).read_text() == second
    assert len(os.listdir(targets["p1"].parent)) == 3


async def test_only_instance_nodes_get_it_and_each_reads_back_the_same_hash(tmp_path) -> None:
    spec, session_path = guide_pair(tmp_path, instances=[
        {"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
        {"role": "decode", "node": "d1", "devices": [6, 7], "port": 13700},
    ])
    session = load_session(session_path)
    async with SimCluster(load_spec(spec), workdir=tmp_path / "sim") as cluster:
        async with RemotePool(targets_for(session, cluster)) as pool:
            facts = await discover(session, pool)
            table = build_ranktable(session, facts)
            assert table["server_count"] == "2"
            text = ranktable_json(table)
            results = await upload_ranktable(pool, session, text)
        assert list(results) == ["p1", "d1"]
        assert {r.sha256 for r in results.values()} == {sha(text.encode())}
        for name in ("p1", "d1"):
            assert Path(results[name].path).read_text() == text
        assert not (cluster.node("d2").home / ".pdwizard").exists()


async def test_paths_with_spaces_quotes_and_home(guide, tmp_path) -> None:
    session, cluster, pool = guide
    text = ranktable_json({"version": "1.2", "odd": "it's $HOME `x` \\n"}) + "\n\n"  # exact, even newlines
    weird = tmp_path / "dir with spaces" / "it's \"quoted\" $HOME *" / "rank table.json"
    results = await upload_ranktable(pool, session, text, path=str(weird))
    assert all(r.ok for r in results.values())
    assert weird.read_bytes() == text.encode()
    assert results["p1"].path == str(weird)

    results = await upload_ranktable(pool, session, text, path="~/my dir/it's.json")
    for name, home in homes(cluster).items():
        assert results[name].path == str(home / "my dir" / "it's.json")
        assert (home / "my dir" / "it's.json").read_bytes() == text.encode()

    results = await upload_ranktable(pool, session, text, path="rel/x.json")  # relative = under $HOME
    assert results["d2"].path == str(cluster.node("d2").home / "rel" / "x.json")


async def test_symlinked_target_keeps_the_link(guide, tmp_path) -> None:
    session, _, pool = guide
    real = tmp_path / "shared" / "ranktable.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    results = await upload_ranktable(pool, session, "new", path=str(link))
    assert link.is_symlink() and real.read_text() == "new"
    assert results["p1"].path == str(real)


async def test_nodes_sharing_the_file_all_end_up_with_it_whole(guide, tmp_path) -> None:
    """A ranktable_path on shared storage: three nodes replace the same file at once."""
    session, _, pool = guide
    target = tmp_path / "nfs" / "ranktable.json"
    target.parent.mkdir()
    for round_ in range(3):
        old, new = f"old {round_}", f"new {round_}" * 1000
        target.write_text(old)
        results = await upload_ranktable(pool, session, new, path=str(target))
        assert all(r.ok and r.path == str(target) for r in results.values()), results
        assert target.read_text() == new
        backups = [Path(r.backup) for r in results.values() if r.backup]
        assert backups and len(set(backups)) == len(backups)  # never two nodes on one backup name
        assert any(b.read_text() == old for b in backups)
        assert not [e for e in os.listdir(target.parent) if e.endswith(".tmp")]
        for b in backups:
            b.unlink()


async def test_failure_on_a_node_is_reported_not_raised(guide, tmp_path) -> None:
    session, _, pool = guide
    blocker = tmp_path / "file"
    blocker.write_text("")
    results = await upload_ranktable(pool, session, "{}", path=str(blocker / "ranktable.json"))
    for name, r in results.items():
        assert not r.ok and r.sha256 is None
        assert r.error.startswith(f"node {name}: cannot write the ranktable at {blocker}/ranktable.json")


def test_default_path_and_configured_path() -> None:
    session = load_session_text()
    assert ranktable_path(session) == "~/.pdwizard/runs/rt/ranktable.json"
    stub = session.model_copy(update={"stack": SimpleNamespace(container=None,
                                                               ranktable_path="/etc/pd/rt.json")})
    assert ranktable_path(stub) == "/etc/pd/rt.json"


def test_script_refuses_bad_paths_and_a_clashing_delimiter() -> None:
    from pdwizard.errors import InputError

    for bad in ("", "/tmp/dir/", "~", "~root/x.json", "a\nb", "x/.."):
        with pytest.raises(InputError):
            upload_script(bad, "{}", nonce="n", stamp="s")
    with pytest.raises(ValueError):
        upload_script("/x", "a\nPDW_RANKTABLE_n\nb", nonce="n", stamp="s")
    script = upload_script("/x", json.dumps({"k": "PDW_RANKTABLE_n"}), nonce="n", stamp="s")
    assert "<<'PDW_RANKTABLE_n'" in script


def load_session_text():
    from pdwizard.models import Session

    return Session.model_validate({
        "schema_version": 1, "name": "rt", "nodes": [{"name": "a", "host": "10.0.0.1"}],
        "instances": [{"role": "prefill", "node": "a", "devices": [0], "port": 1},
                      {"role": "decode", "node": "a", "devices": [1], "port": 2}],
        "model": {"path": "/m"},
    })


async def test_a3_sim_discovery_feeds_vnic_sdid_and_pod_id(sim_cluster_factory, tmp_path) -> None:
    cluster = await sim_cluster_factory(
        {"name": "p1", "soc": "A3", "ip": "10.3.0.1", "super_pod_id": 5},
        {"name": "d1", "soc": "A3", "ip": "10.3.0.2", "super_pod_id": 0, "vnic_ips":
            [f"172.20.2.{d + 1}" for d in range(16)]},
    )
    from pdwizard.models import Session

    session = Session.model_validate({
        "schema_version": 1, "name": "a3",
        "nodes": [{"name": n.name, "host": n.host, "ip": n.ip, "port": n.port} for n in cluster.nodes],
        "ssh": {"user": "root"},
        "instances": [{"role": "prefill", "node": "p1", "devices": [3, 2], "port": 1},
                      {"role": "decode", "node": "d1", "devices": [14, 15], "port": 1}],
        "model": {"path": "/m"},
    })
    async with RemotePool(targets_for(session, cluster)) as pool:
        facts = await discover(session, pool)
    table = build_ranktable(session, facts)
    spec = {n.name: n.spec for n in cluster.nodes}
    want = []
    for name, devices in (("p1", [3, 2]), ("d1", [14, 15])):
        s = spec[name]
        for d in devices:
            want.append({"server_id": s.ip, "device_id": str(d), "device_ip": s.vnic_ips[d],
                         "super_pod_id": str(s.super_pod_id), "super_device_id": str(s.sdids[d]),
                         "cluster_id": str(len(want) + 1)})
    got = table["prefill_device_list"] + table["decode_device_list"]
    assert [list(r.items()) for r in got] == [list(r.items()) for r in want]
    assert table["decode_device_list"][0]["device_ip"] == "172.20.2.15"

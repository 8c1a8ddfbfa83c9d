"""Host keys through the whole headless flow, over real SSH to the simulator.

Strict by default: an unknown key fails the run with its fingerprint and the line
to add; trust_on_first_use records it and proceeds; a changed key always fails.
"""

from __future__ import annotations

import io
from pathlib import Path

import asyncssh
import tomli_w

from pdwizard.progress import PlainProgress
from pdwizard.replay import ReplayOptions, run_replay


def _session_file(tmp: Path, cluster, known_hosts: Path, tofu: bool) -> Path:
    nodes = [{"name": n.name, "host": n.host, "port": n.port, "ip": n.ip} for n in cluster.nodes]
    data = {
        "schema_version": 1, "name": "hostkeys",
        "ssh": {"user": "root", "identity_file": str(cluster.client_key_path),
                "known_hosts": str(known_hosts), "trust_on_first_use": tofu},
        "nodes": nodes,
        "instances": [{"role": "prefill", "node": nodes[0]["name"], "devices": [0], "port": 13700},
                      {"role": "decode", "node": nodes[1]["name"], "devices": [1], "port": 13700}],
        "model": {"path": "/model/Qwen3-30B-A3B"},  # the sim nodes' default model
    }
    path = tmp / f"session-{tofu}.toml"
    path.write_text(tomli_w.dumps(data))
    return path


async def _replay(session: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_replay(ReplayOptions(session_path=session, dry_run=True), PlainProgress(out))
    return code, out.getvalue()


async def test_unknown_key_fails_then_tofu_records_then_strict_passes(sim_cluster_factory, tmp_path):
    cluster = await sim_cluster_factory({"name": "p1", "ip": "192.0.0.1"}, {"name": "d1", "ip": "192.0.0.2"})
    known = tmp_path / "known_hosts"
    code, out = await _replay(_session_file(tmp_path, cluster, known, tofu=False))
    assert code == 1
    for node in cluster.nodes:
        fp = asyncssh.import_public_key(node.host_public_key).get_fingerprint()
        assert fp in out and f"node {node.name}" in out
        assert node.known_hosts_line.split()[0] in out  # the line to add
    assert not known.exists() or known.read_text() == ""

    code, out = await _replay(_session_file(tmp_path, cluster, known, tofu=True))
    assert code == 0, out
    recorded = known.read_text()
    assert all(n.host_public_key in recorded for n in cluster.nodes)

    code, out = await _replay(_session_file(tmp_path, cluster, known, tofu=False))
    assert code == 0, out
    assert known.read_text() == recorded  # nothing written twice


async def test_changed_key_fails_even_with_tofu(sim_cluster_factory, tmp_path):
    cluster = await sim_cluster_factory({"name": "p1", "ip": "192.0.0.1"}, {"name": "d1", "ip": "192.0.0.2"})
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key("openssh").decode()
    p1, d1 = cluster.nodes
    known = tmp_path / "known_hosts"
    known.write_text(f"[{p1.host}]:{p1.port} {impostor}{d1.known_hosts_line}\n")
    before = known.read_text()
    code, out = await _replay(_session_file(tmp_path, cluster, known, tofu=True))
    assert code == 1
    assert "HOST KEY CHANGED" in out and "node p1" in out
    assert "node d1" not in [l.split(":")[0] for l in out.splitlines() if "CHANGED" in l]
    assert known.read_text() == before  # never replaced

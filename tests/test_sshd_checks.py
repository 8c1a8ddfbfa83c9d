"""The whole check flow against real OpenSSH sshd, with the fake tools first on PATH.

The simulator's asyncssh servers are ours; this proves the probe scripts, the
framing and the remote layer also hold against the sshd that real Atlas nodes run
(bash login shell, its own session handling).
"""

from __future__ import annotations

import pytest
from sshd import client_key, sshd_available, sshd_factory  # noqa: F401  (fixtures by name)

from pdwizard.flow import CheckFlow
from pdwizard.models import Session
from pdwizard.progress import PlainProgress
from pdwizard.remote.pool import RemotePool
from pdwizard.replay import targets_for
from pdwizard.report import Report, Status

pytestmark = [pytest.mark.sshd,
              pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available()))]


def _session(servers, known_hosts, key) -> Session:
    nodes = [{"name": name, "host": s.host, "port": s.port, "ip": ip, "nic": "eth0"}
             for (name, ip), s in servers.items()]
    return Session.model_validate({
        "schema_version": 1, "name": "sshd-1p1d",
        "ssh": {"user": "root", "known_hosts": str(known_hosts), "identity_file": str(key)},
        "nodes": nodes,
        "instances": [{"role": "prefill", "node": "p1", "devices": [0, 1], "port": 13700},
                      {"role": "decode", "node": "d1", "devices": [2, 3], "port": 13700}],
        "model": {"path": "/model/Qwen3-30B-A3B"},  # the sim nodes' default model
    })


async def test_checks_over_real_sshd(sim_cluster_factory, sshd_factory, client_key, tmp_path, capsys):
    cluster = await sim_cluster_factory({"name": "p1", "ip": "192.0.0.1"},
                                        {"name": "d1", "ip": "192.0.0.2", "link_down": [3]})
    servers = {}
    for node in cluster.nodes:
        env = cluster.command_env(node, "root")
        env.pop("PATH"), env.pop("HOME")
        servers[(node.name, node.ip)] = sshd_factory(node.name, path_dirs=[node.bin_dir], env=env)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("".join(s.known_hosts_line() + "\n" for s in servers.values()))
    session = _session(servers, known_hosts, client_key)
    report = Report(session=session.name, started_at="test")
    async with RemotePool(targets_for(session)) as pool:
        await CheckFlow(session, pool, report, PlainProgress()).run()
    steps = {s.name: s for s in report.steps}
    assert steps["connect"].status is Status.OK
    assert report.nodes["p1"].soc == "A2" and len(report.nodes["d1"].npus) == 8
    assert report.nodes["d1"].packages["vllm_ascend"] == "0.10.1rc1"
    fails = [(r.check, r.node, r.device) for r in report.failures()]
    assert ("link", "d1", 3) in fails
    assert all(node == "d1" and dev == 3 or check == "ping" for check, node, dev in fails), fails
    pings = [r for r in steps["fabric"].results if r.check == "ping"]
    assert len(pings) == 8 and any(r.status is Status.OK for r in pings)

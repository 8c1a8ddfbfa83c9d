"""The simulated nodes are real SSH servers: keys, auth, refusal, process lifetime, clean stop."""

from __future__ import annotations

import asyncio

import asyncssh
import pytest

from conftest import listening, pid_alive, wait_until
from pdwizard.sim import SimCluster, spec_from_dict


async def test_known_hosts_and_host_keys(sim_cluster_factory, sim_connect):
    c = await sim_cluster_factory({"name": "a"}, {"name": "b"})
    text = c.known_hosts_path.read_text().splitlines()
    entries = [ln for ln in text if not ln.startswith("#")]
    assert len(entries) == 2
    for n, line in zip(c.nodes, entries):
        assert line == n.known_hosts_line
        addr, alg, b64 = line.split()
        assert addr == f"[{n.host}]:{n.port}" and alg == "ssh-ed25519"
        conn = await sim_connect(c, n.name)  # strict known_hosts checking passes
        served = conn.get_server_host_key().export_public_key("openssh").decode().split()
        assert served[:2] == [alg, b64]
    a, b = c.nodes
    assert a.host_public_key != b.host_public_key
    # a known_hosts that has b's key for a's address is refused
    wrong = c.workdir / "wrong_known_hosts"
    wrong.write_text(f"[{a.host}]:{a.port} {b.host_public_key}\n")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await sim_connect(c, "a", known_hosts=str(wrong))


async def test_auth_is_public_key_with_the_cluster_key_only(sim_cluster_factory, sim_connect, tmp_path):
    c = await sim_cluster_factory({"name": "ok"}, {"name": "deny", "auth_fail": True})
    conn = await sim_connect(c, "ok", username="anyone")
    assert (await conn.run("echo $USER", check=False)).stdout == "anyone\n"
    other = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        await sim_connect(c, "ok", client_keys=[other])
    with pytest.raises(asyncssh.PermissionDenied):
        await sim_connect(c, "ok", client_keys=[], password="root")
    with pytest.raises(asyncssh.PermissionDenied):
        await sim_connect(c, "deny")


async def test_unreachable_node_refuses(sim_cluster_factory, sim_connect):
    c = await sim_cluster_factory({"name": "up"}, {"name": "down", "unreachable": True})
    down = c.node("down")
    assert down.port > 0 and c.port_of(down.host, 0) == down.port
    assert not listening(down.host, down.port)
    with pytest.raises(ConnectionRefusedError):
        await sim_connect(c, "down")
    await sim_connect(c, "up")
    assert c.addresses() == [f"{n.host}:0" for n in c.nodes]


async def test_exec_semantics(sim_cluster_factory, sim_connect):
    c = await sim_cluster_factory({"name": "x"})
    conn = await sim_connect(c, "x")
    r = await conn.run("echo out; echo err >&2; exit 7", check=False)
    assert (r.stdout, r.stderr, r.exit_status) == ("out\n", "err\n", 7)
    r = await conn.run("cat", input="hello\n", check=False)
    assert r.stdout == "hello\n"
    r = await conn.run("sh -s", input="hostname\nhccn_tool -i 0 -link -g\n", check=False)
    assert r.stdout == "x\nlink status: UP\n"
    r = await conn.run("kill -TERM $$", check=False)
    assert r.exit_signal is not None and r.exit_signal[0] == "TERM"
    r = await conn.run("printf '%s' \"$0\"", check=False)
    assert r.stdout == "/bin/sh"
    r = await conn.run("echo $FOO", env={"FOO": "bar"}, check=False)  # env requests are ignored
    assert r.stdout == "\n"
    r = await conn.run("tty", term_type="xterm", check=False)  # a pty when asked for one
    assert r.stdout.startswith("/dev/pts/")
    r = await conn.run("head -c 300000 /dev/zero", check=False, encoding=None)
    assert len(r.stdout) == 300000


async def test_closing_the_connection_kills_the_command(sim_cluster_factory, sim_connect):
    c = await sim_cluster_factory({"name": "k"})
    conn = await sim_connect(c, "k")
    proc = await conn.create_process("sleep 30 & echo $!; wait")
    pid = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    assert pid_alive(pid)
    conn.close()
    await wait_until(lambda: not pid_alive(pid), 5, "sleep to be killed after the connection closed")
    # closing only the channel does it too; a TERM-ignoring process is SIGKILLed
    conn = await sim_connect(c, "k")
    proc = await conn.create_process("trap '' TERM; sleep 30 & echo $!; wait")
    pid = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    proc.close()
    await wait_until(lambda: not pid_alive(pid), 5, "sleep to be killed after the channel closed")
    assert (await conn.run("echo alive", check=False)).stdout == "alive\n"


async def test_stop_leaves_no_process_and_no_listener(tmp_path):
    spec = spec_from_dict({"node": [{"name": "s1", "host": "127.0.99.1", "port": 0},
                                    {"name": "s2", "host": "127.0.99.2", "port": 0}]})
    cluster = SimCluster(spec, workdir=tmp_path / "w")
    await cluster.start()
    n1, n2 = cluster.nodes
    assert listening(n1.host, n1.port) and listening(n2.host, n2.port)
    keys = dict(client_keys=[str(cluster.client_key_path)], known_hosts=str(cluster.known_hosts_path),
                username="root", agent_path=None)
    conn = await asyncssh.connect(n1.host, n1.port, **keys)
    # a daemon left behind by a finished command (like `nohup vllm serve &`), one that escaped
    # its process group, and a command still running on an open connection
    r = await conn.run("nohup sleep 60 >/dev/null 2>&1 </dev/null & echo $!", check=False)
    daemon = int(r.stdout)
    r = await conn.run("setsid sleep 61 >/dev/null 2>&1 </dev/null & echo $!", check=False)
    escaped = int(r.stdout)
    proc = await conn.create_process("sleep 62 & echo $!; wait")
    running = int(await asyncio.wait_for(proc.stdout.readline(), 10))
    assert all(pid_alive(p) for p in (daemon, escaped, running))
    assert pid_alive(daemon)  # a finished command's daemons survive while the cluster runs
    assert set(cluster.processes()) >= {daemon, escaped, running}
    await cluster.stop()
    assert not any(pid_alive(p) for p in (daemon, escaped, running))
    assert cluster.processes() == []
    assert not listening(n1.host, n1.port) and not listening(n2.host, n2.port)
    with pytest.raises(OSError):
        await asyncssh.connect(n2.host, n2.port, **keys)
    conn.close()
    # a restart in the same workdir keeps the host keys (known_hosts stays valid)
    again = SimCluster(spec, workdir=tmp_path / "w")
    async with again:
        assert [n.host_public_key for n in again.nodes] == [n1.host_public_key, n2.host_public_key]
        assert again.client_key_path.read_text() == cluster.client_key_path.read_text()


async def test_temp_workdir_is_removed(sim_cluster_factory):
    spec = spec_from_dict({"node": [{"host": "127.0.98.1", "port": 0}]})
    async with SimCluster(spec) as c:
        workdir = c.workdir
        assert (workdir / "known_hosts").exists()
    assert not workdir.exists()


async def test_listen_failure_is_reported(sim_cluster_factory):
    c = await sim_cluster_factory({"name": "first"})
    n = c.node("first")
    clash = SimCluster(spec_from_dict({"node": [{"host": n.host, "port": n.port}]}))
    from pdwizard.errors import PdwError
    with pytest.raises(PdwError, match="cannot listen"):
        await clash.start()
    assert not clash.workdir.exists()


async def test_proxy_jump_through_a_node(sim_cluster_factory, sim_connect):
    c = await sim_cluster_factory({"name": "bastion"}, {"name": "inner"})
    jump = await sim_connect(c, "bastion")
    inner = await sim_connect(c, "inner", tunnel=jump)
    assert (await inner.run("hostname", check=False)).stdout == "inner\n"

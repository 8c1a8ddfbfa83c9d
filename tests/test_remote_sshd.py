"""RemotePool against a real OpenSSH sshd: the server pdwizard meets on Atlas nodes.

Nothing here mocks the remote layer; every assertion is about what a real sshd
did (its pids, its log, the environment a session saw).
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from sshd import (  # noqa: F401  (fixtures are used by name)
    SshdServer,
    await_until,
    client_key,
    fingerprint_of,
    known_hosts_entry,
    make_key,
    pid_alive,
    sshd,
    sshd_factory,
    wait_until,
)
from test_remote_quoting import ARGV, expected_output, printf_command

from pdwizard.errors import RemoteError
from pdwizard.remote import CommandResult, RemotePool, SshTarget

pytestmark = pytest.mark.sshd

Factory = Callable[..., SshdServer]


def fake_tool(directory: Path, name: str, output: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho {output}\n")
    tool.chmod(0o755)
    return directory


# ----------------------------------------------------------------------------- running commands


async def test_run_returns_stdout_stderr_status_and_logs_it(sshd_factory: Factory, tmp_path: Path) -> None:
    bin_dir = fake_tool(tmp_path / "fakebin", "hostname", "fake-n1")
    server = sshd_factory("n1", path_dirs=[bin_dir])
    seen: list[CommandResult] = []
    async with RemotePool([server.target()], on_command=seen.append) as pool:
        result = await pool.run("n1", ["sh", "-c", 'echo out; echo "err $1" >&2; exit 3', "sh", "a b"])
        tool = await pool.run("n1", ["hostname"])
        path = await pool.run("n1", ["sh", "-c", 'echo "$PATH"'])
    assert (result.stdout, result.stderr, result.exit_status, result.ok) == ("out\n", "err a b\n", 3, False)
    assert result.node == "n1"
    assert result.command == "sh -c 'echo out; echo \"err $1\" >&2; exit 3' sh 'a b'"
    assert tool.stdout == "fake-n1\n" and tool.ok
    assert path.stdout.startswith(f"{bin_dir}:"), "the fake tools' dir must come first on PATH"
    assert [r.command for r in seen] == [result.command, "hostname", "sh -c 'echo \"$PATH\"'"]
    assert all(r.node == "n1" and r.duration_s > 0 for r in seen)
    assert seen[0].exit_status == 3


async def test_run_script_feeds_stdin_and_undecodable_output_is_replaced(sshd: SshdServer) -> None:
    script = "set -e\nx='quoted $(not run)'\necho \"$x\"\nprintf '\\377ok\\n'\ncat <<'EOF'\nheredoc\nEOF\nexit 7\n"
    async with RemotePool([sshd.target()]) as pool:
        result = await pool.run_script("n1", script)
        cat = await pool.run("n1", ["cat"])  # stdin closed: EOF, not a hang
    assert result.stdout == "quoted $(not run)\n\ufffdok\nheredoc\n"
    assert result.exit_status == 7 and result.command == "sh -s" and result.stdin == script
    assert cat.stdout == "" and cat.exit_status == 0


async def test_many_runs_share_one_connection(sshd: SshdServer) -> None:
    """Sequential and concurrent calls (more than sshd's MaxSessions=10) reuse one connection."""
    async with RemotePool([sshd.target()]) as pool:
        first = await pool.run("n1", ["sh", "-c", 'echo "$SSH_CONNECTION"'])
        for _ in range(10):
            assert (await pool.run("n1", ["sh", "-c", 'echo "$SSH_CONNECTION"'])).stdout == first.stdout
        burst = await asyncio.gather(
            *(pool.run("n1", ["sh", "-c", 'sleep 0.05; echo "$SSH_CONNECTION"']) for _ in range(30))
        )
        assert {r.stdout for r in burst} == {first.stdout}
        assert pool.connections_opened["n1"] == 1
        assert len(sshd.connection_pids()) >= 1
    assert "Accepted publickey" in sshd.log() and sshd.log().count("Accepted publickey") == 1


async def test_concurrent_first_use_opens_one_connection(sshd: SshdServer) -> None:
    async with RemotePool([sshd.target()]) as pool:
        await asyncio.gather(*(pool.run("n1", ["true"]) for _ in range(8)), pool.connect("n1"))
        assert pool.connections_opened["n1"] == 1


async def test_parallel_runs_on_several_nodes(sshd_factory: Factory) -> None:
    servers = [sshd_factory(f"n{i}") for i in range(1, 4)]
    async with RemotePool([s.target() for s in servers]) as pool:
        started = time.monotonic()
        results = await asyncio.gather(
            *(pool.run(s.name, ["sh", "-c", 'sleep 1; echo "$SSH_CONNECTION"']) for s in servers)
        )
        elapsed = time.monotonic() - started
    assert [r.node for r in results] == ["n1", "n2", "n3"]
    assert [r.stdout.split()[-1] for r in results] == [str(s.port) for s in servers]
    assert elapsed < 2.5, f"three 1 s commands took {elapsed:.2f} s: not parallel"


@pytest.fixture
async def n1_pool(sshd: SshdServer):
    async with RemotePool([sshd.target()]) as pool:
        yield pool


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=ARGV)
async def test_quoting_fuzz_over_ssh(args: list[str], n1_pool: RemotePool) -> None:
    """The remote login shell (bash here) must see exactly the arguments we passed."""
    result = await n1_pool.run("n1", ["sh", "-c", printf_command(args)])
    assert result.exit_status == 0, result.stderr
    assert result.stdout.encode("utf-8") == expected_output(args)


# ----------------------------------------------------------------------------- timeouts and drops


async def test_timeout_kills_the_remote_process_group(sshd: SshdServer, tmp_path: Path) -> None:
    """As root, OpenSSH refuses SSH signal requests: the pool must still kill what it started."""
    leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
    command = f"echo $$ > {leader}; sleep 30 & echo $! > {child}; echo started; wait"
    seen: list[CommandResult] = []
    async with RemotePool([sshd.target()], on_command=seen.append) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.run("n1", ["sh", "-c", command], timeout=1.0)
        pids = [int(leader.read_text()), int(child.read_text())]
        wait_until(lambda: not any(pid_alive(p) for p in pids), 5.0, f"remote pids {pids} to die")
        assert (await pool.run("n1", ["echo", "still usable"])).stdout == "still usable\n"
        assert pool.connections_opened["n1"] == 1
    err = caught.value
    assert err.kind == "timeout" and err.node == "n1"
    assert "node n1" in str(err) and "1 s" in str(err) and "sleep 30" in str(err)
    assert "was killed" in str(err)
    timed_out = seen[0]
    assert timed_out.timed_out and timed_out.exit_status == -1 and timed_out.stdout == "started\n"
    assert 1.0 <= timed_out.duration_s < 4.0


async def test_dropped_connection_is_reopened_once(sshd: SshdServer) -> None:
    async with RemotePool([sshd.target()]) as pool:
        before = await pool.run("n1", ["sh", "-c", 'echo "$SSH_CONNECTION"'])
        for pid in sshd.connection_pids():
            os.kill(pid, 9)
        after = await pool.run("n1", ["sh", "-c", 'echo "$SSH_CONNECTION"'])
        assert after.ok and after.stdout != before.stdout
        assert pool.connections_opened["n1"] == 2


async def test_connection_lost_mid_command_is_disconnected(sshd: SshdServer, tmp_path: Path) -> None:
    marker = tmp_path / "running"
    async with RemotePool([sshd.target()]) as pool:
        task = asyncio.create_task(pool.run("n1", ["sh", "-c", f"touch {marker}; sleep 20"], timeout=30))
        await await_until(marker.exists, 5.0, "the command to start")
        for pid in sshd.connection_pids():
            os.kill(pid, 9)
        with pytest.raises(RemoteError) as caught:
            await asyncio.wait_for(task, 10)
    assert caught.value.kind == "disconnected" and "sleep 20" in str(caught.value)
    assert "may or may not have completed" in str(caught.value)


async def test_close_ends_the_server_side_connection(sshd: SshdServer) -> None:
    pool = RemotePool([sshd.target()])
    await pool.run("n1", ["true"])
    assert sshd.connection_pids()
    await pool.close()
    wait_until(lambda: not sshd.connection_pids(), 5.0, "sshd connection processes to exit")


# ----------------------------------------------------------------------------- host keys


async def test_unknown_host_key_is_refused_with_fingerprint_and_line(sshd: SshdServer, tmp_path: Path) -> None:
    for known_hosts in (tmp_path / "missing" / "known_hosts", tmp_path / "empty"):
        if known_hosts.parent.exists():
            known_hosts.write_text("# nothing yet\n")
        async with RemotePool([sshd.target(known_hosts=str(known_hosts))]) as pool:
            with pytest.raises(RemoteError) as caught:
                await pool.connect("n1")
        err = caught.value
        assert err.kind == "host_key_unknown" and err.node == "n1"
        assert err.fingerprint == sshd.fingerprint() and err.fingerprint in str(err)
        assert err.known_hosts_line == sshd.known_hosts_line()
        assert err.hint and sshd.known_hosts_line() in err.hint and "trust_on_first_use" in err.hint
        assert f"[{sshd.host}]:{sshd.port}" in err.known_hosts_line
    assert not (tmp_path / "missing").exists(), "strict mode must not create anything"


async def test_trust_on_first_use_records_then_strict_accepts(sshd: SshdServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "fresh" / "ssh" / "known_hosts"
    async with RemotePool([sshd.target(known_hosts=str(known_hosts), trust_on_first_use=True)]) as pool:
        assert (await pool.run("n1", ["echo", "hi"])).stdout == "hi\n"
    assert known_hosts.read_text() == sshd.known_hosts_line() + "\n"
    assert stat.S_IMODE(known_hosts.stat().st_mode) == 0o600
    assert stat.S_IMODE(known_hosts.parent.stat().st_mode) == 0o700
    async with RemotePool([sshd.target(known_hosts=str(known_hosts))]) as strict:
        assert (await strict.run("n1", ["echo", "again"])).ok
    async with RemotePool([sshd.target(known_hosts=str(known_hosts), trust_on_first_use=True)]) as again:
        await again.connect("n1")
    assert known_hosts.read_text().count("\n") == 1, "a known key is never appended twice"


async def test_changed_host_key_fails_even_with_tofu(sshd: SshdServer, tmp_path: Path) -> None:
    old_pub = Path(f"{make_key(tmp_path / 'old_host_key')}.pub")
    unrelated = Path(f"{make_key(tmp_path / 'unrelated')}.pub")
    known_hosts = tmp_path / "known_hosts"
    entries = [known_hosts_entry("other.example", 22, unrelated), known_hosts_entry(sshd.host, sshd.port, old_pub)]
    known_hosts.write_text("\n".join(entries) + "\n")
    before = known_hosts.read_text()
    old_fp = fingerprint_of(old_pub)
    for tofu in (False, True):
        async with RemotePool([sshd.target(known_hosts=str(known_hosts), trust_on_first_use=tofu)]) as pool:
            with pytest.raises(RemoteError) as caught:
                await pool.run("n1", ["true"])
            with pytest.raises(RemoteError) as trusting:
                await pool.trust_host_key("n1")
        err = caught.value
        assert err.kind == "host_key_changed" and err.node == "n1"
        assert old_fp in err.message and sshd.fingerprint() in err.message
        assert err.fingerprint == sshd.fingerprint()
        assert err.hint and "ssh-keygen" in err.hint and "-R" in err.hint
        assert f"[{sshd.host}]:{sshd.port}" in err.hint
        assert trusting.value.kind == "host_key_changed"
    assert known_hosts.read_text() == before, "a changed key must never be written"


async def test_recorded_key_of_another_type_counts_as_changed(sshd: SshdServer, tmp_path: Path) -> None:
    """known_hosts has only an ECDSA key, the server only ed25519: no silent fallback."""
    ecdsa = tmp_path / "ecdsa_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa)], check=True)
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_entry(sshd.host, sshd.port, tmp_path / "ecdsa_key.pub") + "\n")
    async with RemotePool([sshd.target(known_hosts=str(known_hosts), trust_on_first_use=True)]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("n1")
    assert caught.value.kind == "host_key_changed" and caught.value.fingerprint == sshd.fingerprint()


async def test_trust_host_key_on_request(sshd: SshdServer, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    async with RemotePool([sshd.target(known_hosts=str(known_hosts))]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("n1")
        line = await pool.trust_host_key("n1")
        assert line == caught.value.known_hosts_line == sshd.known_hosts_line()
        assert (await pool.run("n1", ["echo", "ok"])).ok
        assert await pool.trust_host_key("n1") == line, "already known: same line, nothing written"
    assert known_hosts.read_text() == line + "\n"


# ----------------------------------------------------------------------------- connect failures


async def test_wrong_client_key_is_auth_with_hint(sshd: SshdServer, tmp_path: Path) -> None:
    wrong = make_key(tmp_path / "wrong_key")
    async with RemotePool([sshd.target(identity_file=str(wrong))]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("n1")
    err = caught.value
    assert err.kind == "auth" and err.node == "n1"
    assert str(wrong) in err.message and sshd.address_str() in err.message
    assert err.hint and "ssh-copy-id" in err.hint and f"{wrong}.pub" in err.hint and "password" in err.hint


async def test_missing_or_encrypted_identity_file_is_auth(sshd: SshdServer, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)], check=True)
    for path in (tmp_path / "nope", locked):
        async with RemotePool([sshd.target(identity_file=str(path))]) as pool:
            with pytest.raises(RemoteError) as caught:
                await pool.connect("n1")
        assert caught.value.kind == "auth" and str(path) in caught.value.message
        assert "ssh-agent" in (caught.value.hint or "")


async def test_refused_port_names_the_node(sshd: SshdServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    async with RemotePool([sshd.target("d9", port=closed_port)]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("d9")
    err = caught.value
    assert err.kind == "refused" and err.node == "d9"
    assert str(err).startswith("node d9:") and f"127.0.0.1:{closed_port}" in err.message and err.hint


async def test_silent_port_is_a_connect_timeout(sshd: SshdServer) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        async with RemotePool([sshd.target("d8", port=port, connect_timeout=0.5)]) as pool:
            started = time.monotonic()
            with pytest.raises(RemoteError) as caught:
                await pool.connect("d8")
    assert caught.value.kind == "timeout" and f"127.0.0.1:{port}" in caught.value.message
    assert "0.5 s" in caught.value.message and time.monotonic() - started < 3


async def test_unresolvable_host_is_unreachable(sshd: SshdServer) -> None:
    async with RemotePool([sshd.target("d7", host="no-such-node.invalid")]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("d7")
    assert caught.value.kind == "unreachable" and "no-such-node.invalid" in caught.value.message


async def test_connect_all_reports_each_node(sshd_factory: Factory, tmp_path: Path) -> None:
    good = sshd_factory("good")
    wrong = make_key(tmp_path / "wrong")
    targets = [
        good.target(),
        good.target("badkey", identity_file=str(wrong)),
        good.target("closed", port=1),
        good.target("stranger", known_hosts=str(tmp_path / "none")),
    ]
    async with RemotePool(targets) as pool:
        outcome = await pool.connect_all()
        assert outcome["good"] is None
        kinds = {name: err.kind for name, err in outcome.items() if err is not None}
        assert kinds == {"badkey": "auth", "closed": "refused", "stranger": "host_key_unknown"}
        assert all(err.node == name for name, err in outcome.items() if err is not None)
        assert (await pool.run("good", ["true"])).ok


async def test_unknown_node_name_is_a_programming_error(sshd: SshdServer) -> None:
    async with RemotePool([sshd.target()]) as pool:
        with pytest.raises(ValueError, match="unknown node 'zz'.*n1"):
            await pool.run("zz", ["true"])
    with pytest.raises(ValueError, match="unique"):
        RemotePool([sshd.target(), sshd.target()])


# ----------------------------------------------------------------------------- ProxyJump


async def test_proxyjump_through_an_openssh_bastion(sshd_factory: Factory) -> None:
    bastion = sshd_factory("bastion", log_level="DEBUG1")  # DEBUG1 logs each tunnel it opens
    nodes = [sshd_factory("n1"), sshd_factory("n2")]
    jump = bastion.target()
    async with RemotePool([n.target(jump=jump) for n in nodes]) as pool:
        results = await asyncio.gather(*(pool.run(n.name, ["sh", "-c", 'echo "$SSH_CONNECTION"']) for n in nodes))
        assert [r.stdout.split()[-1] for r in results] == [str(n.port) for n in nodes]
        assert pool.connections_opened == {"bastion": 1, "n1": 1, "n2": 1}
    for n in nodes:
        assert f"target 127.0.0.1 port {n.port}" in bastion.log(), "the node was not reached through the bastion"


async def test_bastion_failure_is_kind_jump_naming_both(sshd_factory: Factory, tmp_path: Path) -> None:
    node = sshd_factory("n1")
    closed = SshTarget(name="bastion", host="127.0.0.1", port=1, connect_timeout=2)
    stranger = node.target("bastion2", known_hosts=str(tmp_path / "nothing"))
    async with RemotePool([node.target(jump=closed), node.target("n2", jump=stranger)]) as pool:
        outcome = await pool.connect_all()
    refused, unknown = outcome["n1"], outcome["n2"]
    assert refused is not None and refused.kind == "jump" and refused.node == "n1"
    assert "bastion" in refused.message and "127.0.0.1:1" in refused.message
    assert node.address_str() in refused.message
    assert isinstance(refused.__cause__, RemoteError) and refused.__cause__.kind == "refused"
    assert unknown is not None and unknown.kind == "jump" and "bastion2" in unknown.message
    assert unknown.fingerprint == node.fingerprint(), "the bastion's key details reach the UI"


async def test_bastion_that_forbids_forwarding_is_kind_jump(sshd_factory: Factory) -> None:
    bastion = sshd_factory("bastion", extra_config="DisableForwarding yes")
    node = sshd_factory("n1")
    async with RemotePool([node.target(jump=bastion.target())]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("n1")
    assert caught.value.kind == "jump" and "bastion" in caught.value.message


async def test_trust_host_key_walks_bastion_then_node(sshd_factory: Factory, tmp_path: Path) -> None:
    """The TUI flow: each error carries the key to show; each trust_host_key call records one hop."""
    bastion, node = sshd_factory("bastion"), sshd_factory("n1")
    known_hosts = str(tmp_path / "known_hosts")
    target = node.target(known_hosts=known_hosts, jump=bastion.target(known_hosts=known_hosts))
    async with RemotePool([target]) as pool:
        with pytest.raises(RemoteError) as first:
            await pool.connect("n1")
        assert first.value.kind == "jump" and first.value.fingerprint == bastion.fingerprint()
        assert await pool.trust_host_key("n1") == bastion.known_hosts_line()
        with pytest.raises(RemoteError) as second:
            await pool.connect("n1")
        assert second.value.kind == "host_key_unknown" and second.value.fingerprint == node.fingerprint()
        assert await pool.trust_host_key("n1") == node.known_hosts_line()
        assert (await pool.run("n1", ["true"])).ok
    assert Path(known_hosts).read_text() == f"{bastion.known_hosts_line()}\n{node.known_hosts_line()}\n"


async def test_several_host_key_types_match_the_recorded_one(sshd_factory: Factory, tmp_path: Path) -> None:
    """known_hosts records the ECDSA key of a server that prefers ed25519: known, not changed."""
    ecdsa = tmp_path / "host_ecdsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(ecdsa)], check=True)
    server = sshd_factory("n1", extra_config=f"HostKey {ecdsa}")
    line = known_hosts_entry(server.host, server.port, Path(f"{ecdsa}.pub"))
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("this line is not valid known_hosts syntax\n" + line + "\n")
    async with RemotePool([server.target(known_hosts=str(known_hosts))]) as pool:
        assert (await pool.run("n1", ["true"])).ok
        assert await pool.trust_host_key("n1") == line
    assert known_hosts.read_text().count("\n") == 2

"""RemotePool against the simulated cluster (asyncssh servers running real /bin/sh).

The simulator is the cluster every other pdwizard test uses, so the remote layer
must work with it exactly as with OpenSSH (see test_remote_sshd.py): same
host-key rules, same errors, same kill on timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from sshd import await_until, pid_alive
from test_remote_quoting import ARGV, expected_output, printf_command

from pdwizard.errors import RemoteError
from pdwizard.remote import CommandResult, RemotePool, SshTarget
from pdwizard.sim import SimCluster

MakeCluster = Callable[..., Awaitable[SimCluster]]


def sim_target(cluster: SimCluster, node_name: str, **overrides: Any) -> SshTarget:
    """A strict target for a sim node (``name`` defaults to the node's)."""
    node = cluster.node(node_name)
    fields: dict[str, Any] = {
        "name": node_name,
        "host": node.host,
        "port": node.port,
        "user": "root",
        "identity_file": str(cluster.client_key_path),
        "known_hosts": str(cluster.known_hosts_path),
        "connect_timeout": 5.0,
    }
    fields.update(overrides)
    return SshTarget(**fields)


@pytest.fixture
async def trio(sim_cluster_factory: MakeCluster) -> SimCluster:
    return await sim_cluster_factory({"name": "p1"}, {"name": "d1"}, {"name": "d2"})


async def test_parallel_runs_reach_the_right_sim_nodes(trio: SimCluster) -> None:
    seen: list[CommandResult] = []
    names = ["p1", "d1", "d2"]
    async with RemotePool([sim_target(trio, n) for n in names], on_command=seen.append) as pool:
        assert await pool.connect_all() == {n: None for n in names}
        results = await asyncio.gather(*(pool.run(n, ["sh", "-c", 'echo "$PDWIZARD_SIM_NODE"']) for n in names))
        npu = await pool.run("p1", ["npu-smi", "info"])
        for _ in range(5):
            await asyncio.gather(*(pool.run(n, ["true"]) for n in names for _ in range(4)))
        assert dict(pool.connections_opened) == {n: 1 for n in names}
    assert [r.stdout.strip() for r in results] == [str(trio.node(n).state_dir) for n in names]
    assert npu.ok and "npu-smi" in npu.stdout.lower()
    assert len(seen) == 3 + 1 + 60 and all(r.duration_s > 0 for r in seen)


async def test_run_script_and_status(trio: SimCluster) -> None:
    async with RemotePool([sim_target(trio, "p1")]) as pool:
        result = await pool.run_script("p1", "echo one\necho two >&2\nexit 4\n")
    assert (result.stdout, result.stderr, result.exit_status) == ("one\n", "two\n", 4)


@pytest.fixture
async def p1_pool(trio: SimCluster):
    async with RemotePool([sim_target(trio, "p1")]) as pool:
        yield pool


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=ARGV)
async def test_quoting_fuzz_over_sim_ssh(args: list[str], p1_pool: RemotePool) -> None:
    """The sim's login shell is /bin/sh (dash on Debian), unlike sshd's bash: both must agree."""
    result = await p1_pool.run("p1", ["sh", "-c", printf_command(args)])
    assert result.exit_status == 0, result.stderr
    assert result.stdout.encode("utf-8") == expected_output(args)


async def test_timeout_kills_the_sim_process(trio: SimCluster, tmp_path: Path) -> None:
    leader, child = tmp_path / "leader.pid", tmp_path / "child.pid"
    command = f"echo $$ > {leader}; sleep 30 & echo $! > {child}; wait"
    async with RemotePool([sim_target(trio, "p1")]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.run("p1", ["sh", "-c", command], timeout=0.5)
        pids = [int(leader.read_text()), int(child.read_text())]
        await await_until(lambda: not any(pid_alive(p) for p in pids), 5.0, f"sim pids {pids} to die")
        assert (await pool.run("p1", ["true"])).ok
    assert caught.value.kind == "timeout" and caught.value.node == "p1" and "0.5 s" in str(caught.value)


async def test_sim_failures_map_to_kinds(sim_cluster_factory: MakeCluster, tmp_path: Path) -> None:
    cluster = await sim_cluster_factory(
        {"name": "ok"}, {"name": "down", "unreachable": True}, {"name": "locked", "auth_fail": True}
    )
    targets = [sim_target(cluster, n) for n in ("ok", "down", "locked")]
    targets.append(sim_target(cluster, "ok", name="unknown", known_hosts=str(tmp_path / "none")))
    async with RemotePool(targets) as pool:
        outcome = await pool.connect_all()
    kinds = {name: err.kind if err else None for name, err in outcome.items()}
    assert kinds == {"ok": None, "down": "refused", "locked": "auth", "unknown": "host_key_unknown"}
    assert outcome["unknown"] is not None
    assert outcome["unknown"].known_hosts_line == cluster.node("ok").known_hosts_line


async def test_tofu_records_the_sim_key(trio: SimCluster, tmp_path: Path) -> None:
    known_hosts = tmp_path / "kh" / "known_hosts"
    async with RemotePool([sim_target(trio, "d1", known_hosts=str(known_hosts), trust_on_first_use=True)]) as pool:
        assert (await pool.run("d1", ["true"])).ok
    assert known_hosts.read_text() == trio.node("d1").known_hosts_line + "\n"


# ----------------------------------------------------------------------------- ProxyJump


async def test_proxyjump_through_a_sim_node(trio: SimCluster) -> None:
    """Two nodes behind one bastion share the bastion connection."""
    jump = sim_target(trio, "p1", name="bastion")
    async with RemotePool([sim_target(trio, n, jump=jump) for n in ("d1", "d2")]) as pool:
        where = ["sh", "-c", 'echo "$PDWIZARD_SIM_NODE"']
        results = await asyncio.gather(*(pool.run(n, where) for n in ("d1", "d2")))
        assert pool.connections_opened == {"bastion": 1, "d1": 1, "d2": 1}
    assert [r.stdout.strip() for r in results] == [str(trio.node(n).state_dir) for n in ("d1", "d2")]


class _RoutingBastion(asyncssh.SSHServer):
    """A bastion that knows names nobody else can resolve: proof a connection was tunnelled."""

    def __init__(self, routes: dict[str, tuple[str, int]], opened: list[str]) -> None:
        self._routes = routes
        self._opened = opened
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn

    def begin_auth(self, username: str) -> bool:
        return True

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int) -> Any:
        if dest_host not in self._routes:
            raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, "Connection refused")
        self._opened.append(dest_host)
        assert self._conn is not None
        return self._conn.forward_connection(*self._routes[dest_host])

    def session_requested(self) -> bool:
        return False


@pytest.fixture
async def routing_bastion(trio: SimCluster, tmp_path: Path):
    """(bastion target, node target for a name only the bastion resolves, tunnels opened)."""
    d1 = trio.node("d1")
    hidden = "d1.behind-bastion.invalid"
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    opened: list[str] = []
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=str(trio.client_public_key_path),
        server_factory=lambda: _RoutingBastion({hidden: (d1.host, d1.port)}, opened),
    )
    port = server.get_port()
    known_hosts = tmp_path / "known_hosts"
    public = host_key.export_public_key().decode().split()[:2]
    known_hosts.write_text(f"[127.0.0.1]:{port} {' '.join(public)}\n[{hidden}]:{d1.port} {d1.host_public_key}\n")
    jump = SshTarget(name="bastion", host="127.0.0.1", port=port, user="ops",
                     identity_file=str(trio.client_key_path), known_hosts=str(known_hosts))
    node = sim_target(trio, "d1", host=hidden, known_hosts=str(known_hosts), jump=jump)
    yield jump, node, opened
    server.close()
    await server.wait_closed()


async def test_node_reachable_only_through_the_bastion(routing_bastion: Any) -> None:
    jump, node, opened = routing_bastion
    direct_target = dataclasses.replace(node, name="direct", jump=None)
    async with RemotePool([direct_target, node]) as pool:
        with pytest.raises(RemoteError) as direct:
            await pool.connect("direct")
        result = await pool.run("d1", ["hostname"])
    assert direct.value.kind == "unreachable"
    assert result.ok and opened == ["d1.behind-bastion.invalid"]


async def test_bastion_cannot_reach_the_node(routing_bastion: Any) -> None:
    jump, node, _ = routing_bastion
    lost = SshTarget(name="lost", host="nowhere.invalid", port=22, identity_file=node.identity_file,
                     known_hosts=node.known_hosts, jump=jump)
    async with RemotePool([lost]) as pool:
        with pytest.raises(RemoteError) as caught:
            await pool.connect("lost")
    err = caught.value
    assert err.kind == "refused" and "via bastion" not in err.message
    assert "bastion" in err.message and "nowhere.invalid:22" in err.message


async def test_a_failing_command_log_never_fails_the_command(trio: SimCluster) -> None:
    def broken_log(result: CommandResult) -> None:
        raise RuntimeError("log widget gone")

    async with RemotePool([sim_target(trio, "p1")], on_command=broken_log) as pool:
        assert (await pool.run("p1", ["echo", "done"])).stdout == "done\n"

"""Shared fixtures. Simulator fixtures: a cluster built from node dicts, and SSH into it."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from pathlib import Path

import asyncssh
import pytest

from pdwizard.sim import SimCluster, spec_from_dict

# Each cluster a test builds gets its own loopback /24 (127.0.<k>.x, k from 100 up) and
# port 0 by default, so tests never collide with each other or with the demo (127.0.1.x:2222).
_sim_nets = itertools.count()


def next_sim_net() -> int:
    return 100 + (next(_sim_nets) + os.getpid()) % 150


def pid_alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


async def wait_until(cond, timeout: float = 5.0, what: str = "condition", interval: float = 0.02) -> None:
    """Poll cond() until true, failing after timeout seconds (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def listening(host: str, port: int) -> bool:
    """True if a TCP socket is in LISTEN state on host:port (from /proc/net/tcp)."""
    want = "".join(f"{int(b):02X}" for b in reversed(host.split("."))) + f":{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(line.split()[1] == want and line.split()[3] == "0A" for line in f.readlines()[1:])


@pytest.fixture
async def sim_cluster_factory(tmp_path: Path):
    """``await make(*node_dicts, workdir=None, start=True) -> SimCluster``; all stopped at teardown.

    Node dicts are ``[[node]]`` tables; ``host`` defaults to a fresh 127.0.<k>.<i+1> and
    ``port`` to 0 (a free port, see ``cluster.nodes[i].port``).
    """
    made: list[SimCluster] = []

    async def make(*nodes: dict, workdir: Path | None = None, start: bool = True) -> SimCluster:
        net = next_sim_net()
        spec_nodes = []
        for i, node in enumerate(nodes or ({},)):
            node = dict(node)
            node.setdefault("host", f"127.0.{net}.{i + 1}")
            node.setdefault("port", 0)
            spec_nodes.append(node)
        cluster = SimCluster(spec_from_dict({"node": spec_nodes}, source="test"),
                             workdir=workdir or tmp_path / f"sim-{net}-{len(made)}")
        made.append(cluster)
        if start:
            await cluster.start()
        return cluster

    yield make
    for cluster in reversed(made):
        await cluster.stop()


@pytest.fixture
async def sim_connect():
    """``await connect(cluster, node_name, **asyncssh_options) -> SSHClientConnection`` (closed at teardown)."""
    conns: list[asyncssh.SSHClientConnection] = []

    async def connect(cluster: SimCluster, name: str, **options) -> asyncssh.SSHClientConnection:
        node = cluster.node(name)
        options.setdefault("username", "root")
        options.setdefault("client_keys", [str(cluster.client_key_path)])
        options.setdefault("known_hosts", str(cluster.known_hosts_path))
        options.setdefault("agent_path", None)
        conn = await asyncssh.connect(node.host, node.port, **options)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()
        await conn.wait_closed()


@pytest.fixture
async def sim_run(sim_connect):
    """``await run(cluster, node_name, command) -> SSHCompletedProcess`` over one reused connection."""
    cache: dict[tuple[int, str], asyncssh.SSHClientConnection] = {}

    async def run(cluster: SimCluster, name: str, command: str, **kw) -> asyncssh.SSHCompletedProcess:
        key = (id(cluster), name)
        if key not in cache:
            cache[key] = await sim_connect(cluster, name)
        return await cache[key].run(command, check=False, **kw)

    return run


@pytest.fixture(autouse=True)
def _pdwizard_state(tmp_path_factory, monkeypatch):
    """Recent sessions and other per-user state go to a temp dir, never the real home."""
    monkeypatch.setenv("PDWIZARD_STATE_DIR", str(tmp_path_factory.mktemp("state")))


@pytest.fixture(autouse=True)
def _tui_demo_lock(request):
    """TUI tests run the demo cluster on its fixed addresses (127.0.1.x:2222, so screenshots
    show the same hosts everywhere): one such test at a time, also across pytest processes."""
    if not request.node.module.__name__.startswith("test_tui"):
        yield
        return
    import fcntl

    with open("/tmp/pdwizard-tui-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield

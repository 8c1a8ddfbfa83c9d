"""Helpers for the deploy tests (no tests here): stand-in processes and plans on the simulator.

Until the fake `vllm serve` lands, orchestration is tested over real SSH against SimCluster
nodes with stand-in commands: a tiny stdlib HTTP server (GET /health -> 200) that can start
slowly, fail with a given log line, or ignore SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from pathlib import Path

import tomli_w
from conftest import next_sim_net
from simfiles import guide_pair

from pdwizard import artifacts
from pdwizard.flow import CheckFlow
from pdwizard.replay import targets_for
from pdwizard.report import Report
from pdwizard.session import load_session
from pdwizard.sim import SimCluster, load_spec
from pdwizard.wizard import QuietProgress

from pdwizard.deploy.plan import DeployPlan, ProcessSpec
from pdwizard.deploy.runtime import Runtime
from pdwizard.remote.pool import RemotePool
from pdwizard.remote.target import SshTarget

# argv: python3 -c STANDIN HOST PORT. Env: STANDIN_DELAY (s before listening), STANDIN_FAIL (a
# line to print before exiting 1), STANDIN_IGNORE_TERM=1, STANDIN_CHILD=1 (also start a child
# that ignores SIGTERM and loops), STANDIN_ESCAPE=1 (a child that leaves the process group),
# STANDIN_SPAM=N (print N numbered lines, then serve).
STANDIN = r"""
import http.server, os, signal, subprocess, sys, time
host, port = sys.argv[1], int(sys.argv[2])
print(f"INFO stand-in vllm starting on {host}:{port} pid {os.getpid()}", flush=True)
if os.environ.get("STANDIN_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("STANDIN_CHILD"):
    subprocess.Popen(["sh", "-c", "trap '' TERM; while :; do sleep 1; done"])
if os.environ.get("STANDIN_ESCAPE"):  # a child in a session (and process group) of its own
    subprocess.Popen(["sh", "-c", "while :; do sleep 1; done"], start_new_session=True)
for i in range(int(os.environ.get("STANDIN_SPAM", "0"))):
    print(f"spam {i:08d}", flush=False)
sys.stdout.flush()
time.sleep(float(os.environ.get("STANDIN_DELAY", "0")))
if os.environ.get("STANDIN_FAIL"):
    print("Traceback (most recent call last):", flush=True)
    print(os.environ["STANDIN_FAIL"], flush=True)
    sys.exit(1)

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if self.path in ("/health", "/healthcheck") else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, fmt, *args):
        print("GET", self.path, flush=True)

server = http.server.ThreadingHTTPServer((host, port), H)
print("INFO:     Application startup complete.", flush=True)
server.serve_forever()
"""


def free_port(host: str) -> int:
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def standin(name: str, node, role: str = "prefill", *, port: int | None = None, env: dict | None = None,
            health_paths=("/health",)) -> ProcessSpec:
    """A stand-in vLLM on sim node `node` (a SimNode), listening on its loopback host."""
    port = port or free_port(node.host)
    return ProcessSpec.make(name, node.name, role, port, ["python3", "-c", STANDIN, node.host, str(port)],
                            health_host=node.host, env=sorted((env or {}).items()),
                            health_paths=health_paths)


def plan(session: str, *specs: ProcessSpec, grace: float = 5.0, timeouts: dict | None = None,
         runtime: Runtime | None = None) -> DeployPlan:
    return DeployPlan(session=session, processes=tuple(specs), runtime=runtime or Runtime(),
                      startup_timeout_s={"prefill": 20.0, "decode": 20.0, "proxy": 20.0, **(timeouts or {})},
                      stop_grace_s=grace, command_timeout_s=30.0)


def pool_for(cluster, **kw) -> RemotePool:
    targets = [SshTarget(name=n.name, host=n.host, port=n.port, user="root",
                         identity_file=str(cluster.client_key_path), known_hosts=str(cluster.known_hosts_path))
               for n in cluster.nodes]
    return RemotePool(targets, **kw)


def run_dir_of(cluster, node: str, session: str) -> Path:
    return cluster.node(node).home / ".pdwizard" / "runs" / session


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group pgid, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] not in (b"Z", b"X") and int(fields[2]) == pgid:
            out.append(int(entry))
    return out


def own_subnet(spec: Path, session: Path) -> None:
    """Move the guide's pair to a loopback subnet of this process (parallel runs never collide)."""
    net = next_sim_net()
    for path, key in ((spec, "node"), (session, "nodes")):
        data = tomllib.loads(path.read_text())
        for i, node in enumerate(data[key], start=1):
            node["host"] = f"127.{net}.7.{i}"
        path.write_text(tomli_w.dumps(data))


@contextlib.asynccontextmanager
async def guide(tmp_path: Path, faults: dict | None = None, *, own_net: bool = False, **session_extra):
    """The guide's 1P2D on a SimCluster, connected and discovered, its artifacts built:
    yields (session, cluster, pool, artifacts)."""
    spec, path = guide_pair(tmp_path, faults, session_extra={"stack": {"stop_grace_s": 2}, **session_extra})
    if own_net:
        own_subnet(spec, path)
    session = load_session(path)
    async with SimCluster(load_spec(spec), workdir=tmp_path / "sim") as cluster:
        async with RemotePool(targets_for(session, cluster)) as pool:
            flow = CheckFlow(session, pool, Report(session=session.name, started_at="test"), QuietProgress())
            await flow.connect()
            await flow.discover()
            yield session, cluster, pool, artifacts.build(session, flow.facts)

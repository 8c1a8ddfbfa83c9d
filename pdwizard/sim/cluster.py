"""SimCluster: simulated Ascend nodes reachable over real SSH.

Each node is an asyncssh server on its own loopback address (all of 127.0.0.0/8 is
routable on Linux ``lo``). Public-key authentication only, with one client key the
cluster generates; one ed25519 host key per node, all written to a known_hosts file.

Every exec request runs ``/bin/sh -c COMMAND`` in a real shell, in a new session
(process group), with the node's fake tools first on PATH, its own HOME and its own
filesystem root ``$PDWIZARD_SIM_ROOT`` (``<node dir>/root``): a path the node "has", such
as the model directory ``/model/Qwen3-30B-A3B``, is ``$PDWIZARD_SIM_ROOT/model/Qwen3-30B-A3B``
on the machine running the simulator. Probes (and later the fake ``vllm serve``) prefix
node paths with ``${PDWIZARD_SIM_ROOT:-}``; real nodes have no such variable. Closing
the channel or the connection before the command finished kills its process group
(SIGTERM, then SIGKILL); a command that finished may leave background daemons
behind like on a real host (``nohup ... &``), and ``stop()`` kills every process that
still carries one of the cluster's node markers in its environment, so nothing
outlives the cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import termios
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from pdwizard.errors import PdwError
from pdwizard.sim import render
from pdwizard.sim.spec import NodeSpec, SimSpec, busy_processes, node_facts, reachable_targets
from pdwizard.sim.state import register_npu_processes, write_facts

BIN_TEMPLATES = Path(__file__).resolve().parent / "bin"
TOOLS = ("hccn_tool", "npu-smi", "hostname", "ip", "vllm")
#: where `pdwizard` is importable from: the fake `vllm` runs `python -m pdwizard.sim.vllm` (bin/vllm)
PKG_ROOT = Path(__file__).resolve().parent.parent.parent
KILL_GRACE_S = 1.0
MARKER_ENV = "PDWIZARD_SIM_NODE"
ROOT_ENV = "PDWIZARD_SIM_ROOT"


@dataclass
class SimNode:
    """One running (or refusing) simulated node."""

    index: int
    spec: NodeSpec
    name: str
    host: str
    port: int                   # the actual port once started (spec port, or the one picked for 0)
    ip: str
    dir: Path
    home: Path
    bin_dir: Path
    state_dir: Path             # $PDWIZARD_SIM_NODE
    hccn_conf: Path             # $PDWIZARD_HCCN_CONF
    toolkit_home: Path          # $ASCEND_TOOLKIT_HOME
    python_path: Path           # $PYTHONPATH (fake vllm / vllm_ascend dist-info)
    root: Path                  # $PDWIZARD_SIM_ROOT: the node's filesystem root (models, ...)
    host_key_path: Path
    facts: dict = field(default_factory=dict, repr=False)
    host_public_key: str = ""   # "ssh-ed25519 AAAA..."
    known_hosts_line: str = ""

    @property
    def spec_port(self) -> int:
        return self.spec.port

    @property
    def refuses(self) -> bool:
        return self.spec.unreachable

    def ssh_command(self, client_key: Path, user: str = "root") -> str:
        return f"ssh -p {self.port} -i {client_key} {user}@{self.host}"


class SimCluster:
    """Simulated Ascend nodes over real SSH. Async context manager: start() / stop()."""

    def __init__(self, spec: SimSpec, workdir: str | os.PathLike | None = None) -> None:
        self.spec = spec
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="pdwizard-sim-")) if workdir is None \
            else Path(workdir).resolve()
        self.client_key_path = self.workdir / "client_key"
        self.known_hosts_path = self.workdir / "known_hosts"
        self.nodes: list[SimNode] = []
        for i, n in enumerate(spec.nodes):
            d = self.workdir / "nodes" / n.name
            self.nodes.append(SimNode(
                index=i, spec=n, name=n.name, host=n.host, port=n.port, ip=n.ip, dir=d,
                home=d / "home", bin_dir=d / "bin", state_dir=d / "state",
                hccn_conf=d / "etc" / "hccn.conf",
                toolkit_home=d / "Ascend" / "ascend-toolkit" / "latest",
                python_path=d / "site-packages", root=d / "root", host_key_path=d / "ssh_host_ed25519_key",
            ))
        self._client_key: asyncssh.SSHKey | None = None
        self._acceptors: list[asyncssh.SSHAcceptor] = []
        self._conns: set[asyncssh.SSHServerConnection] = set()
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task] = set()
        self.started = False

    # ------------------------------------------------------------------ lookups

    @property
    def client_public_key_path(self) -> Path:
        return self.client_key_path.with_name(self.client_key_path.name + ".pub")

    def node(self, name: str) -> SimNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no simulated node named {name!r} (have: {', '.join(n.name for n in self.nodes)})")

    def _find(self, host: str, port: int) -> SimNode | None:
        for n in self.nodes:
            if n.host == host and port in (n.port, n.spec.port):
                return n
        return None

    def port_of(self, host: str, port: int) -> int | None:
        """The actual SSH port of the node at host:port (port = spec port or actual), or None."""
        n = self._find(host, port)
        return None if n is None else n.port

    def addresses(self) -> list[str]:
        """Every node as "host:port" (the spec's port)."""
        return [f"{n.host}:{n.spec.port}" for n in self.nodes]

    def node_home(self, host: str, port: int) -> Path:
        """HOME of the node at host:port (port = spec port or actual)."""
        n = self._find(host, port)
        if n is None:
            raise KeyError(f"no simulated node at {host}:{port}")
        return n.home

    @staticmethod
    def node_path(n: SimNode, path: str) -> Path:
        """Where an absolute path of node n lives on this machine: under its root."""
        return n.root / path.lstrip("/")

    def processes(self) -> list[int]:
        """PIDs of live (non-zombie) processes started on any node of this cluster."""
        return marked_pids(self.workdir / "nodes")

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> SimCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        """Write keys and node files, then listen on every reachable node."""
        if self.started:
            return
        try:
            await asyncio.to_thread(self._prepare)
            for n in self.nodes:
                if n.refuses:
                    if n.port == 0:
                        n.port = _free_port(n.host)
                    continue
                self._acceptors.append(await self._listen(n))
            await asyncio.to_thread(self._write_known_hosts)
        except BaseException:
            await self.stop()
            raise
        self.started = True

    async def stop(self) -> None:
        """Stop listening, close every connection, kill every process the nodes started."""
        for acc in self._acceptors:
            acc.close()
        for acc in self._acceptors:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(acc.wait_closed(), 5)
        self._acceptors.clear()
        for conn in list(self._conns):
            conn.close()
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 5)
        for s in list(self._sessions):
            s.channel_gone()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=KILL_GRACE_S + 4)
        for s in list(self._sessions):
            s.kill_now()
        await asyncio.to_thread(_sweep, self.workdir / "nodes")
        self.started = False
        if self._own_workdir:
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    # ------------------------------------------------------------------ setup

    def _prepare(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._client_key = _load_or_make_key(self.client_key_path, "pdwizard-sim client")
        for n in self.nodes:
            n.dir.mkdir(parents=True, exist_ok=True)
            key = _load_or_make_key(n.host_key_path, f"pdwizard-sim {n.name}")
            n.host_public_key = " ".join(key.export_public_key("openssh").decode().split()[:2])
            self._install_node(n)

    def _install_node(self, n: SimNode) -> None:
        for sub in ("bin", "state", "site-packages", "Ascend", "etc", "root"):  # regenerated every start
            shutil.rmtree(n.dir / sub, ignore_errors=True)
        n.home.mkdir(parents=True, exist_ok=True)
        n.bin_dir.mkdir(parents=True)
        facts = node_facts(self.spec, n.index)
        n.facts = facts
        s = n.state_dir
        # tools
        for tool in TOOLS:
            if tool == "npu-smi":  # python: a wrapper, so no shebang limits on the python path
                text = ("#!/bin/sh\n# npu-smi as simulated by pdwizard.sim (a fake: no NPU behind it).\n"
                        f"export PDWIZARD_SIM_NODE=\"${{PDWIZARD_SIM_NODE:-}}\"\n"
                        f"[ -n \"$PDWIZARD_SIM_NODE\" ] || PDWIZARD_SIM_NODE={_sh_quote(str(s))}\n"
                        f"exec {_sh_quote(sys.executable)} -S {_sh_quote(str(BIN_TEMPLATES / tool))} \"$@\"\n")
            else:
                text = (BIN_TEMPLATES / tool).read_text()
            path = n.bin_dir / tool
            path.write_text(text)
            path.chmod(0o755)
        # state: few files (creating files is the slow part of a start), sourced by the sh tools
        s.mkdir()
        (s / "hccn").mkdir()
        (s / "procs").mkdir()
        write_facts(s, facts)
        host_vars = {"hostname": n.name + "\n", "hostname_I": render.hostname_i(facts),
                     "hostname_i": n.ip + "\n", "ip_l": render.ip_link(facts, oneline=False),
                     "ip_lo": render.ip_link(facts, oneline=True), "ip_route": render.ip_route(facts),
                     "ip_route_get": render.ip_route_get(facts),
                     # bin/vllm: the python and the import root of the fake `vllm serve`
                     "sim_python": sys.executable, "sim_pkg_root": str(PKG_ROOT)}
        for fam in ("", "4", "6"):
            host_vars[f"ip_o{fam}"] = render.ip_addr(facts, oneline=True, family=fam or None)
            host_vars[f"ip_a{fam}"] = render.ip_addr(facts, oneline=False, family=fam or None)
        _write(s / "host.sh", _sh_vars(host_vars))
        if n.spec.tool_delay_ms:
            _write(s / "tool_delay", f"{n.spec.tool_delay_ms / 1000:.3f}\n")
        if n.spec.busy_first:
            _write(s / "busy_left", f"{n.spec.busy_first}\n")
        h = s / "hccn"
        usage = {f"usage_{cmd[1:]}": render.hccn_param_list(cmd) for cmd in render.HCCN_HELP}
        usage["usage_all"] = "".join(f"hccn_tool -i devid {cmd}\n{help_}\n" for cmd, help_ in render.HCCN_HELP.items())
        _write(h / "usage.sh", _sh_vars(usage))
        for c in facts["chip"]:
            phy = c["phy"]
            dev_vars: dict[str, str] = {}
            for cmd in render.HCCN_GET_COMMANDS:
                out = render.hccn_get(facts, phy, cmd)
                dev_vars[f"out_{cmd}"] = out.stdout
                dev_vars[f"err_{cmd}"] = out.stderr
                dev_vars[f"rc_{cmd}"] = str(out.exit_status)
            dev_vars["ping_dead"] = "" if c["link_up"] and c["has_ip"] else "1"
            # A3: the two dies of one NPU are not RoCE-connected to each other
            dev_vars["ping_block"] = facts["chip"][phy ^ 1]["ip"] if n.spec.soc == "A3" else ""
            _write(h / f"{phy}.sh", _sh_vars(dev_vars))
        reach = sorted(reachable_targets(self.spec, n.index))
        _write(h / "reach.sh", "reach() {\n  case $1 in\n"
               + ("    " + "|".join(reach) + ") return 0 ;;\n" if reach else "")
               + "  esac\n  return 1\n}\n")
        busy = busy_processes(self.spec, n.index)
        if busy:
            register_npu_processes(s, "busy_npus", busy)
        # files the probes read
        if n.spec.no_hccn_conf:
            with contextlib.suppress(FileNotFoundError):
                n.hccn_conf.unlink()
        else:
            _write(n.hccn_conf, render.hccn_conf(facts))
        _write(n.toolkit_home / "aarch64-linux" / "ascend_toolkit_install.info",
               render.toolkit_install_info(n.spec.cann_version))
        _write(n.dir / "Ascend" / "driver" / "version.info", render.driver_version_info(n.spec.driver_version))
        _write(n.python_path / f"vllm-{n.spec.vllm_version}.dist-info" / "METADATA",
               render.dist_metadata("vllm", n.spec.vllm_version))
        _write(n.python_path / f"vllm_ascend-{n.spec.vllm_ascend_version}.dist-info" / "METADATA",
               render.dist_metadata("vllm_ascend", n.spec.vllm_ascend_version))
        # the node's own files, under its root
        n.root.mkdir(parents=True)
        config = render.model_config_json(n.spec.model_type, n.spec.config_overrides)
        for model in n.spec.models:
            _write(self.node_path(n, model) / "config.json", config)

    def _write_known_hosts(self) -> None:
        lines = ["# SIMULATED: host keys of the pdwizard sim cluster in " + str(self.workdir)]
        for n in self.nodes:
            addr = n.host if n.port == 22 else f"[{n.host}]:{n.port}"
            n.known_hosts_line = f"{addr} {n.host_public_key}"
            lines.append(n.known_hosts_line)
        _write(self.known_hosts_path, "\n".join(lines) + "\n")

    async def _listen(self, n: SimNode) -> asyncssh.SSHAcceptor:
        try:
            acc = await asyncssh.listen(
                host=n.host, port=n.port,
                server_factory=lambda: _NodeServer(self, n),
                server_host_keys=[str(n.host_key_path)],
                encoding=None, line_editor=False, allow_scp=False,
                x11_forwarding=False, agent_forwarding=False, reuse_address=True,
            )
        except OSError as err:
            raise PdwError(f"sim node {n.name}: cannot listen on {n.host}:{n.port}: {err.strerror or err}",
                           hint="is another simulator (or sshd) using that address? stop it, or change "
                                "the node's host/port (port = 0 picks a free one)") from None
        n.port = acc.get_port()
        return acc

    # ------------------------------------------------------------------ commands

    def command_env(self, n: SimNode, username: str, peer: tuple[str, int] | None = None,
                    term: str | None = None) -> dict[str, str]:
        """The environment a command on node n runs with."""
        env = {
            "PATH": f"{n.bin_dir}:{os.environ.get('PATH') or os.defpath}",
            "HOME": str(n.home),
            "USER": username,
            "LOGNAME": username,
            "SHELL": "/bin/sh",
            "LANG": "C.UTF-8",
            MARKER_ENV: str(n.state_dir),
            "PDWIZARD_HCCN_CONF": str(n.hccn_conf),
            ROOT_ENV: str(n.root),
            "ASCEND_TOOLKIT_HOME": str(n.toolkit_home),
            "PYTHONPATH": str(n.python_path),
            "SIMULATED": "1",
            "PDWIZARD_SIM_HOST": n.host,  # the fake vllm binds here, never 0.0.0.0 (nodes share this machine)
        }
        if peer:
            env["SSH_CLIENT"] = f"{peer[0]} {peer[1]} {n.port}"
            env["SSH_CONNECTION"] = f"{peer[0]} {peer[1]} {n.host} {n.port}"
        if term:
            env["TERM"] = term
        return env

    def _track(self, coro) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class _NodeServer(asyncssh.SSHServer):
    def __init__(self, cluster: SimCluster, node: SimNode) -> None:
        self._cluster = cluster
        self._node = node
        self._conn: asyncssh.SSHServerConnection | None = None
        self._username = "root"

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._cluster._conns.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cluster._conns.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        self._username = username
        n = self._node
        with contextlib.suppress(Exception):
            self._conn.send_auth_banner(
                f"SIMULATED Ascend node {n.name} ({n.spec.soc} x{n.spec.npus}) - pdwizard simulator, "
                "not real hardware\n")
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        ck = self._cluster._client_key
        return (not self._node.spec.auth_fail and ck is not None
                and key.public_data == ck.public_data)

    def connection_requested(self, dest_host: str, dest_port: int, orig_host: str, orig_port: int):
        # direct-tcpip (ProxyJump through a sim node): only to loopback addresses
        return dest_host.startswith("127.") or dest_host == "localhost"

    def session_requested(self):
        peer = self._conn.get_extra_info("peername") if self._conn else None
        return _Session(self._cluster, self._node, self._username, peer[:2] if peer else None)


class _Session(asyncssh.SSHServerSession):
    """One channel: a shell or a command in a real /bin/sh, in its own process group."""

    def __init__(self, cluster: SimCluster, node: SimNode, username: str, peer) -> None:
        self._cluster = cluster
        self._node = node
        self._username = username
        self._peer = peer
        self._chan = None
        self._command: str | None = None
        self._term: str | None = None
        self._size = (80, 24)
        self._proc: asyncio.subprocess.Process | None = None
        self._master: int | None = None
        self._pending: list[bytes] = []
        self._eof = False
        self._closed = False     # the channel is gone
        self._finished = False   # exit status sent
        self._writable = asyncio.Event()
        self._writable.set()
        self._pty_eof = asyncio.Event()

    # asyncssh callbacks ---------------------------------------------------------

    def connection_made(self, chan) -> None:
        self._chan = chan

    def pty_requested(self, term_type: str, term_size, term_modes) -> bool:
        self._term = term_type or "xterm"
        if term_size and term_size[0] and term_size[1]:
            self._size = (term_size[0], term_size[1])
        return True

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self._command = command if isinstance(command, str) else command.decode("utf-8", "replace")
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        return False

    def session_started(self) -> None:
        self._cluster._sessions.add(self)
        self._cluster._track(self._run())

    def data_received(self, data: bytes, datatype) -> None:
        if self._proc is None:
            self._pending.append(data)
        else:
            self._feed(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._proc is not None:
            self._close_stdin()
        return True

    def signal_received(self, signame: str) -> None:
        sig = getattr(signal, "SIG" + signame.upper(), None)
        if sig is not None and self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, sig)

    def break_received(self, msec: int) -> bool:
        return False

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        self._size = (width, height)
        if self._master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def connection_lost(self, exc) -> None:
        self.channel_gone()

    # process handling ------------------------------------------------------------

    def channel_gone(self) -> None:
        """The channel closed: if the command still runs, kill its process group."""
        if self._closed:
            return
        self._closed = True
        self._writable.set()
        if not self._finished and self._proc is not None:
            self._cluster._track(self._terminate())

    def kill_now(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)

    async def _terminate(self) -> None:
        proc = self._proc
        first = [signal.SIGHUP, signal.SIGTERM] if self._term else [signal.SIGTERM]
        for sig in first:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE_S)
        # whatever is left of the group (the leader, or children that ignored SIGTERM)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def _feed(self, data: bytes) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, data)
            return
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
            stdin.write(data)

    def _close_stdin(self) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                os.write(self._master, b"\x04")
            return
        stdin = self._proc.stdin
        if stdin is not None and not stdin.is_closing():
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, RuntimeError):
                stdin.close()

    def _write(self, data: bytes, stderr: bool = False) -> None:
        if self._closed:
            return
        try:
            if stderr:
                self._chan.write_stderr(data)
            else:
                self._chan.write(data)
        except (BrokenPipeError, OSError, asyncssh.Error):
            pass

    async def _pump(self, reader: asyncio.StreamReader, stderr: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            await self._writable.wait()
            self._write(data, stderr)

    async def _run(self) -> None:
        try:
            await self._run_inner()
        finally:
            self._cluster._sessions.discard(self)

    async def _run_inner(self) -> None:
        n = self._node
        env = self._cluster.command_env(n, self._username, self._peer, self._term)
        if self._command is None:
            argv = ["/bin/sh", "-i"] if self._term else ["/bin/sh"]
        else:
            argv = ["/bin/sh", "-c", self._command]
        if self._closed:
            return
        try:
            if self._term:
                await self._spawn_pty(argv, env)
            else:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=env, cwd=str(n.home), start_new_session=True)
        except OSError as err:
            self._write(f"sh: {err}\n".encode(), stderr=True)
            self._finish(127)
            return
        if self._closed:
            await self._terminate()
            await self._proc.wait()
            return
        for data in self._pending:
            self._feed(data)
        self._pending.clear()
        if self._eof:
            self._close_stdin()
        if self._master is not None:
            await self._pty_eof.wait()
            rc = await self._proc.wait()
        else:
            pumps = [asyncio.ensure_future(self._pump(self._proc.stdout, False)),
                     asyncio.ensure_future(self._pump(self._proc.stderr, True))]
            rc = await self._proc.wait()
            await asyncio.gather(*pumps, return_exceptions=True)
        self._finish(rc)

    def _finish(self, rc: int) -> None:
        if self._master is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            with contextlib.suppress(OSError):
                os.close(self._master)
            self._master = None
        if self._closed:
            return
        self._finished = True
        try:
            if rc < 0:
                name = signal.Signals(-rc).name[3:]
                self._chan.exit_with_signal(name)
            else:
                self._chan.exit(rc)
        except (OSError, asyncssh.Error, ValueError):
            pass

    async def _spawn_pty(self, argv: list[str], env: dict[str, str]) -> None:
        master, slave = os.openpty()
        cols, rows = self._size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(self._node.home),
                start_new_session=True, preexec_fn=_set_controlling_tty)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        os.set_blocking(master, False)
        self._master = master
        asyncio.get_running_loop().add_reader(master, self._pty_readable)

    def _pty_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
            self._pty_eof.set()
            return
        self._write(data)


def _set_controlling_tty() -> None:  # runs in the child, after setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


# --------------------------------------------------------------------------- helpers

def _write(path: Path, text: str) -> None:
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True)
    path.write_text(text)


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def _sh_vars(values: dict[str, str]) -> str:
    """A file of shell assignments the fake tools source with `.` (a builtin: no fork)."""
    return "".join(f"{k}={_sh_quote(v)}\n" for k, v in values.items())


def _load_or_make_key(path: Path, comment: str) -> asyncssh.SSHKey:
    """Reuse a key from an earlier run in the same workdir (so known_hosts stays valid)."""
    if path.exists():
        with contextlib.suppress(Exception):
            return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519", comment=comment)
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def marked_pids(nodes_dir: Path) -> list[int]:
    """Live processes whose environment says they run on a node under nodes_dir."""
    prefix = f"{MARKER_ENV}={nodes_dir}{os.sep}".encode()
    me = os.getpid()
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == b"Z":
            continue
        if any(var.startswith(prefix) for var in env.split(b"\0")):
            out.append(int(entry))
    return out


def _sweep(nodes_dir: Path, grace: float = KILL_GRACE_S) -> None:
    """SIGTERM, then SIGKILL, every process still marked as running on the cluster."""
    import time

    pids = marked_pids(nodes_dir)
    if not pids:
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        pids = marked_pids(nodes_dir)
        if not pids:
            return
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while marked_pids(nodes_dir) and time.monotonic() < deadline:
        time.sleep(0.02)

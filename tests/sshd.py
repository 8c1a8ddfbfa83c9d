"""A real OpenSSH sshd for tests, so the remote layer is proven against the server it meets in production.

``start_sshd`` runs ``/usr/sbin/sshd -D -e -f <tmp config>`` on a free loopback
port with a throwaway ed25519 host key, public-key auth only, and session
environment set with ``SetEnv``:

* ``PATH=<extra dirs>:<standard PATH>`` puts fake tools first;
* ``HOME=<tmp home>`` keeps the test user's ``~/.bashrc`` (which bash sources
  for ssh commands, and which may prepend its own PATH entries) out of the
  session, so the extra dirs really stay first;
* ``PDW_SSHD_MARKER=<uuid>`` tags every session process, so ``stop`` finds them
  even after their connection died and they were orphaned (sshd leaves session
  processes running when a connection or the listener goes away).

``stop`` ends the listener's process tree leaves first (so every process is
reaped by its own parent), then any orphaned session, and raises if anything
survives. Skips the test when /usr/sbin/sshd is missing.

Readiness is a condition with a deadline (the SSH banner answers), never a sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pdwizard.remote import SshTarget

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = "ssh-keygen"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRIVSEP_DIR = Path("/run/sshd")
READY_DEADLINE_S = 10.0
STOP_DEADLINE_S = 5.0
MARKER_VAR = "PDW_SSHD_MARKER"


def sshd_available() -> str | None:
    """None when a real sshd can run here, else the reason to skip."""
    if not SSHD.exists():
        return f"{SSHD} is not installed (apt-get install openssh-server)"
    return None


def make_key(path: Path, comment: str = "pdwizard-test") -> Path:
    """A fresh passphrase-less ed25519 key pair at ``path`` / ``path.pub``."""
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def known_hosts_entry(host: str, port: int, public_key: Path) -> str:
    """``[host]:port type base64`` for the key in ``public_key`` (an OpenSSH .pub file)."""
    return f"[{host}]:{port} " + " ".join(public_key.read_text().split()[:2])


def fingerprint_of(public_key: Path) -> str:
    """``SHA256:...`` as ``ssh-keygen -lf`` prints it."""
    out = subprocess.run([SSH_KEYGEN, "-l", "-E", "sha256", "-f", str(public_key)],
                         check=True, capture_output=True, text=True).stdout
    return out.split()[1]


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class SshdServer:
    """One running sshd. ``target()`` builds an SshTarget that trusts it strictly."""

    name: str
    root: Path
    host: str
    port: int
    host_key: Path
    client_key: Path
    home: Path
    marker: str
    process: subprocess.Popen[bytes]
    log_path: Path
    known_hosts: Path = field(init=False)

    def __post_init__(self) -> None:
        self.known_hosts = self.root / "known_hosts"
        self.known_hosts.write_text(self.known_hosts_line() + "\n")

    def host_public_key(self) -> str:
        """``ssh-ed25519 AAAA...`` (no comment)."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    def address_str(self) -> str:
        """``host:port`` as the remote layer's messages print it."""
        return f"{self.host}:{self.port}"

    def known_hosts_line(self) -> str:
        return known_hosts_entry(self.host, self.port, Path(f"{self.host_key}.pub"))

    def fingerprint(self) -> str:
        return fingerprint_of(Path(f"{self.host_key}.pub"))

    def target(self, name: str | None = None, **overrides: object) -> SshTarget:
        fields: dict[str, object] = {
            "name": name or self.name,
            "host": self.host,
            "port": self.port,
            "user": getpass.getuser(),
            "identity_file": str(self.client_key),
            "known_hosts": str(self.known_hosts),
            "connect_timeout": 5.0,
        }
        fields.update(overrides)
        return SshTarget(**fields)  # type: ignore[arg-type]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self) -> list[int]:
        """Every live process this server started: the listener and its descendants, plus
        session processes found by their marker even after they were orphaned.

        (sshd rewrites its own environ area for its process titles, so the marker is
        only visible in the sessions' environments, not in sshd's.)
        """
        found = set(_marked_pids(self.marker))
        if self.process.poll() is None:
            found |= {self.process.pid, *_descendants(self.process.pid)}
        return sorted(pid for pid in found if pid_alive(pid))

    def connection_pids(self) -> list[int]:
        """The per-connection sshd processes (killing them drops the client's connections)."""
        listener = self.process.pid
        return [pid for pid in self.pids() if pid != listener and _cmdline(pid).startswith(b"sshd")]

    def stop(self) -> None:
        """End everything this server started, children before parents, and prove it is gone.

        Children first so each is reaped by its own sshd parent instead of being
        orphaned to init as a lingering ``[sshd] <defunct>``.
        """
        orphans = [pid for pid in _marked_pids(self.marker) if pid not in _descendants(self.process.pid)]
        for pid in orphans:  # sessions whose connection is already gone
            _signal(pid, signal.SIGKILL)
        _end_tree(self.process.pid, STOP_DEADLINE_S)
        _signal(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_DEADLINE_S)
        left = sorted({*orphans, *_marked_pids(self.marker), *_descendants(self.process.pid)})
        if not _wait_dead(left, STOP_DEADLINE_S):
            alive = [pid for pid in left if pid_alive(pid)]
            raise RuntimeError(f"sshd {self.name}: processes survived stop: {alive}")


def start_sshd(
    root: Path,
    *,
    name: str = "sshd",
    client_key: Path,
    host: str = "127.0.0.1",
    path_dirs: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    authorized_keys: Sequence[Path] | None = None,
    extra_config: str = "",
    log_level: str = "VERBOSE",
) -> SshdServer:
    """Start sshd in ``root`` (created); ``authorized_keys`` defaults to ``client_key``'s public key.

    ``log_level`` DEBUG1 logs forwarding requests (a bastion's tunnels) but also
    leaks debug lines into session stderr, so keep it for servers that run no commands.
    """
    reason = sshd_available()
    if reason:
        pytest.skip(reason)
    root.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    host_key = make_key(root / "ssh_host_ed25519_key", comment="")
    auth = root / "authorized_keys"
    pubs = authorized_keys if authorized_keys is not None else [client_key]
    auth.write_text("".join(Path(f"{p}.pub").read_text() for p in pubs))
    home = root / "home"
    home.mkdir(exist_ok=True)
    marker = uuid.uuid4().hex
    last_error = ""
    for _ in range(5):  # the free port may be taken between probe and bind
        port = free_port(host)
        settings = f"LogLevel {log_level}\n{extra_config}"
        extra_env = " ".join(f'"{k}={v}"' for k, v in (env or {}).items())
        config = _write_config(root, host, port, host_key, auth, home, marker, path_dirs, settings,
                               extra_env)
        log_path = root / f"sshd-{port}.log"
        process = _spawn(config, log_path)
        outcome = _wait_ready(process, host, port, log_path)
        if outcome is None:
            return SshdServer(name, root, host, port, host_key, client_key, home, marker, process, log_path)
        last_error = outcome
        if "Address already in use" not in outcome:
            break
    raise RuntimeError(f"sshd {name} did not start: {last_error}")


def _write_config(
    root: Path,
    host: str,
    port: int,
    host_key: Path,
    auth: Path,
    home: Path,
    marker: str,
    path_dirs: Sequence[Path],
    extra_config: str,
    extra_env: str = "",
) -> Path:
    session_path = ":".join([*(str(d) for d in path_dirs), STANDARD_PATH])
    config = root / f"sshd_config-{port}"
    config.write_text(
        f"""\
ListenAddress {host}:{port}
HostKey {host_key}
PidFile {root}/sshd-{port}.pid
AuthorizedKeysFile {auth}
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
PrintMotd no
PrintLastLog no
PermitUserRC no
PermitTTY no
X11Forwarding no
AllowAgentForwarding no
AllowTcpForwarding yes
MaxStartups 100
SetEnv "PATH={session_path}" "HOME={home}" {MARKER_VAR}={marker} {extra_env}
{extra_config}
"""
    )
    return config


def _spawn(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait_ready(process: subprocess.Popen[bytes], host: str, port: int, log_path: Path) -> str | None:
    """None once sshd answers with an SSH banner; the reason if it exits or misses the deadline."""
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with {process.returncode}: {log_path.read_text(errors='replace')}"
        if _banner(host, port):
            return None
        time.sleep(0.02)
    process.kill()
    process.wait()
    return f"no SSH banner within {READY_DEADLINE_S} s: {log_path.read_text(errors='replace')}"


def _banner(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def _marked_pids(marker: str) -> list[int]:
    """Live (non-zombie) processes whose environment carries ``marker``."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0") and not _is_zombie(entry):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a killed child not yet reaped is dead)."""
    try:
        return not _is_zombie(Path(f"/proc/{pid}"))
    except (OSError, IndexError):
        return False


def wait_until(predicate: Callable[[], bool], deadline_s: float = 5.0, what: str = "condition") -> None:
    """Poll ``predicate`` until true; AssertionError naming ``what`` after the deadline."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(0.02)


async def await_until(predicate: Callable[[], bool], deadline_s: float = 5.0, what: str = "condition") -> None:
    """``wait_until`` that lets the event loop run (for conditions that need in-flight tasks)."""
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.02)


def _is_zombie(proc_dir: Path) -> bool:
    stat = (proc_dir / "stat").read_text()
    return stat.rpartition(")")[2].split()[0] == "Z"


def _parents() -> dict[int, int]:
    """pid -> ppid for every process, zombies included."""
    links = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                links[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return links


def _descendants(root: int, links: dict[int, int] | None = None) -> list[int]:
    """Every descendant of ``root`` (zombies included: a zombie still needs reaping)."""
    links = _parents() if links is None else links
    children: dict[int, list[int]] = {}
    for pid, ppid in links.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _end_tree(root: int, deadline_s: float) -> None:
    """Signal the leaves of ``root``'s tree until the tree is empty: TERM, then KILL after 2 s."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        links = _parents()
        tree = _descendants(root, links)
        if not tree:
            return
        parents = {links.get(pid) for pid in tree}
        sig = signal.SIGKILL if time.monotonic() - started > 2.0 else signal.SIGTERM
        for pid in tree:
            if pid not in parents and pid_alive(pid):
                _signal(pid, sig)
        time.sleep(0.02)


def _wait_dead(pids: list[int], deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def client_key(tmp_path: Path) -> Path:
    """The test client's ed25519 identity (authorized on every server by default)."""
    return make_key(tmp_path / "id_ed25519")


@pytest.fixture
def sshd_factory(tmp_path: Path, client_key: Path) -> Iterator[object]:
    """``sshd_factory(name, **kwargs)`` starts a real sshd; all are stopped and checked gone."""
    servers: list[SshdServer] = []

    def factory(name: str = "sshd", **kwargs: object) -> SshdServer:
        server = start_sshd(tmp_path / name, name=name, client_key=client_key, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield factory
    errors = []
    for server in reversed(servers):
        try:
            server.stop()
        except RuntimeError as exc:
            errors.append(str(exc))
    assert not errors, errors


@pytest.fixture
def sshd(sshd_factory: object) -> SshdServer:
    """One real sshd named "n1"."""
    return sshd_factory("n1")  # type: ignore[operator]

"""known_hosts handling: strict lookup, the exact line to add, and TOFU recording.

Host keys are the only thing standing between the operator and a
man-in-the-middle who would receive every command pdwizard sends, so the rules
are OpenSSH's StrictHostKeyChecking: an unknown key is refused unless the
operator opted into trust-on-first-use, and a *changed* key is always refused.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

import asyncssh

from pdwizard.remote.target import DEFAULT_SSH_PORT, SshTarget

log = logging.getLogger(__name__)


def known_hosts_path(target: SshTarget) -> Path:
    """The file that decides which keys ``target`` may present."""
    return Path(target.known_hosts or "~/.ssh/known_hosts").expanduser()


def host_pattern(host: str, port: int) -> str:
    """OpenSSH's known_hosts host field: ``host`` on port 22, ``[host]:port`` otherwise."""
    return host if port == DEFAULT_SSH_PORT else f"[{host}]:{port}"


def known_hosts_line(host: str, port: int, key: asyncssh.SSHKey) -> str:
    """The exact line (no newline) that makes ``key`` known for ``host:port``."""
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    return f"{host_pattern(host, port)} {algorithm} {blob}"


def fingerprint(key: asyncssh.SSHKey) -> str:
    """``SHA256:...``, the form ``ssh`` and ``ssh-keygen -lf`` print."""
    return key.get_fingerprint("sha256")


def describe(key: asyncssh.SSHKey) -> str:
    """``ssh-ed25519 SHA256:...`` for messages."""
    return f"{key.get_algorithm()} {fingerprint(key)}"


def parse_known_hosts(text: str, source: str) -> asyncssh.SSHKnownHosts:
    """Parse known_hosts text; skip (and log) malformed lines as OpenSSH does.

    Skipping can only make a host *unknown*, never trusted, so it cannot weaken
    strict checking; failing instead would refuse files that ``ssh`` accepts.
    """
    try:
        return asyncssh.import_known_hosts(text)
    except ValueError:
        pass
    good: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            asyncssh.import_known_hosts(line)
        except ValueError as exc:
            log.warning("%s:%d: ignoring malformed known_hosts line (%s)", source, number, exc)
            continue
        good.append(line)
    return asyncssh.import_known_hosts("\n".join(good) + "\n")


def load_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """Read ``path``; a missing file means "no host is known yet" (strict still applies)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        text = ""
    return parse_known_hosts(text, str(path))


def lookup(
    known: asyncssh.SSHKnownHosts, host: str, port: int, addr: str = ""
) -> tuple[list[asyncssh.SSHKey], list[asyncssh.SSHKey]]:
    """(trusted keys, revoked keys) for ``host:port``, with asyncssh's own matching rules."""
    matched = asyncssh.match_known_hosts(
        known, host, addr, None if port == DEFAULT_SSH_PORT else port
    )
    return list(matched[0]), list(matched[2])


def host_key_status(known: asyncssh.SSHKnownHosts, target: SshTarget, key: asyncssh.SSHKey) -> str:
    """``"known"``, ``"unknown"`` or ``"changed"`` (a revoked key counts as changed)."""
    trusted, revoked = lookup(known, target.host, target.port)
    if key in revoked:
        return "changed"
    if key in trusted:
        return "known"
    return "changed" if trusted else "unknown"


class HostKeyConflict(Exception):
    """known_hosts already holds a different key for the host: never overwrite it."""

    def __init__(self, path: Path, known: list[asyncssh.SSHKey]) -> None:
        super().__init__(f"{path} already has a different key for this host")
        self.path = path
        self.known = known


def record_host_key(target: SshTarget, key: asyncssh.SSHKey) -> str:
    """Append ``key`` for ``target`` to its known_hosts file; return the line.

    Atomic enough for concurrent pdwizard processes: an exclusive flock, a re-read
    under the lock (someone may have recorded the host meanwhile), then a single
    O_APPEND write and fsync. The file is created 0600 and its directory 0700, as
    ssh expects. Raises HostKeyConflict when a different key is already recorded.
    """
    path = known_hosts_path(target)
    line = known_hosts_line(target.host, target.port, key)
    _ensure_private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = _read_all(fd)
        known = parse_known_hosts(data.decode("utf-8", "replace"), str(path))
        status = host_key_status(known, target, key)
        if status == "known":
            return line
        if status == "changed":
            raise HostKeyConflict(path, lookup(known, target.host, target.port)[0])
        prefix = b"\n" if data and not data.endswith(b"\n") else b""
        os.write(fd, prefix + line.encode("ascii") + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)  # also releases the lock
    log.info("recorded host key of %s (%s) in %s", target.name, describe(key), path)
    return line


def _ensure_private_dir(directory: Path) -> None:
    """Create the known_hosts directory 0700 if missing; never chmod an existing one."""
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks: list[bytes] = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)

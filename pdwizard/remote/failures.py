"""Build the RemoteErrors the operator reads: which node, where, what happened, how to fix.

Kept apart from the pool so the wording lives in one place and every path
(direct, through a bastion, at connect or mid-command) says things the same way.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import shlex
import socket
from pathlib import Path

import asyncssh

from pdwizard.errors import RemoteError
from pdwizard.remote.hostkeys import (
    describe,
    fingerprint,
    host_pattern,
    known_hosts_line,
    known_hosts_path,
)
from pdwizard.remote.target import SshTarget

_COMMAND_SHOWN = 300  # characters of a command quoted in a message


def effective_user(target: SshTarget) -> str:
    """The login name asyncssh will use (the local user when the target has none)."""
    return target.user or getpass.getuser()


def _via(target: SshTarget) -> str:
    return f" (via bastion {target.jump.name})" if target.jump else ""


def _short(command: str) -> str:
    return command if len(command) <= _COMMAND_SHOWN else command[:_COMMAND_SHOWN] + "..."


def _host_key_file(key: asyncssh.SSHKey) -> str:
    """Where the node keeps this key type, for the out-of-band check."""
    algorithm = key.get_algorithm()
    kind = "ed25519" if "ed25519" in algorithm else "ecdsa" if "ecdsa" in algorithm else "rsa"
    return f"/etc/ssh/ssh_host_{kind}_key.pub"


def host_key_unknown(target: SshTarget, key: asyncssh.SSHKey) -> RemoteError:
    """Strict mode met a host it has never seen: show the key and the line to add."""
    path = known_hosts_path(target)
    line = known_hosts_line(target.host, target.port, key)
    return RemoteError(
        target.name,
        "host_key_unknown",
        f"host key of {target.display}{_via(target)} is not in {path}: "
        f"the server presents {describe(key)}",
        hint=(
            f"verify {fingerprint(key)} out of band (on the node: ssh-keygen -lf "
            f"{_host_key_file(key)}), then add this line to {path}:\n    {line}\n"
            "  or accept it when asked, or set trust_on_first_use = true to record unknown keys "
            "automatically (a changed key is never accepted)"
        ),
        fingerprint=fingerprint(key),
        known_hosts_line=line,
    )


def host_key_changed(
    target: SshTarget,
    known: list[asyncssh.SSHKey],
    presented: asyncssh.SSHKey | None,
    *,
    path: Path | None = None,
    detail: str = "",
) -> RemoteError:
    """known_hosts holds another key for this host: possibly a man-in-the-middle. Never proceed."""
    path = path or known_hosts_path(target)
    recorded = ", ".join(describe(key) for key in known) or "a revoked or unusable key"
    now = describe(presented) if presented else "a key that could not be read"
    pattern = host_pattern(target.host, target.port)
    return RemoteError(
        target.name,
        "host_key_changed",
        f"HOST KEY CHANGED for {target.display}{_via(target)}: {path} has {recorded}, "
        f"the server now presents {now}{detail}. This is either a reinstalled node or "
        "someone intercepting the connection; refusing to connect",
        hint=(
            "verify the new key out of band on the node"
            + (f" (ssh-keygen -lf {_host_key_file(presented)})" if presented else "")
            + "; only if the change is expected, remove the old entry with "
            f"`ssh-keygen -f {shlex.quote(str(path))} -R {shlex.quote(pattern)}` and connect again "
            "(trust_on_first_use never replaces a changed key)"
        ),
        fingerprint=fingerprint(presented) if presented else None,
        known_hosts_line=known_hosts_line(target.host, target.port, presented) if presented else None,
    )


def auth_failed(target: SshTarget, detail: str = "") -> RemoteError:
    """Say which key was offered for which user, and how to install it."""
    user = effective_user(target)
    dest = f"{user}@{target.host}"
    port = f" -p {target.port}" if target.port != 22 else ""
    if target.identity_file:
        tried = f"key {target.identity_file}"
        copy = f"ssh-copy-id -i {shlex.quote(target.identity_file)}.pub{port} {dest}"
    else:
        tried = "the ssh-agent keys and the default keys (~/.ssh/id_ed25519, id_ecdsa, id_rsa)"
        copy = f"ssh-copy-id{port} {dest}"
    return RemoteError(
        target.name,
        "auth",
        f"{target.display}{_via(target)} refused public-key authentication for user {user!r} "
        f"with {tried}{detail}",
        hint=(
            f"install the public key on the node ({copy}), or set identity_file / user for "
            "this node; password and keyboard-interactive login are not supported"
        ),
    )


def key_unusable(target: SshTarget, exc: Exception) -> RemoteError:
    """The identity file cannot be loaded: missing, unreadable, or passphrase-protected."""
    return RemoteError(
        target.name,
        "auth",
        f"cannot load identity_file {target.identity_file}: {exc}",
        hint=(
            "check the path and permissions; a passphrase-protected key must be loaded into "
            "ssh-agent (ssh-add) with identity_file left empty, since pdwizard never asks "
            "for passphrases"
        ),
    )


def connect_failed(target: SshTarget, exc: BaseException) -> RemoteError | None:
    """Map a connect-time exception to a RemoteError; None for anything unexpected (a bug)."""
    if isinstance(exc, asyncssh.PermissionDenied):
        return auth_failed(target, f" ({exc.reason})" if exc.reason else "")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return _tunnel_failed(target, exc)
    if isinstance(exc, asyncssh.DisconnectError):
        return _handshake_failed(target, exc.reason or type(exc).__name__)
    timed_out = isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT
    if timed_out or isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return _connect_timeout(target)
    if isinstance(exc, ConnectionRefusedError):
        return refused(target)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return _handshake_failed(target, str(exc))
    if isinstance(exc, socket.gaierror):
        return unreachable(target, f"cannot resolve host name {target.host!r} ({exc.strerror})")
    if isinstance(exc, OSError):
        return unreachable(target, exc.strerror or str(exc))
    return None


def refused(target: SshTarget) -> RemoteError:
    return RemoteError(
        target.name,
        "refused",
        f"connection refused by {target.address}{_via(target)}: nothing listens on port {target.port}",
        hint=(
            f"check that sshd runs on the node and listens on port {target.port} "
            f"(systemctl status ssh; ss -ltnp | grep :{target.port}) and that the session's "
            "host and port are right"
        ),
    )


def unreachable(target: SshTarget, reason: str) -> RemoteError:
    return RemoteError(
        target.name,
        "unreachable",
        f"cannot reach {target.address}{_via(target)}: {reason}",
        hint=(
            f"check the node's host/address, DNS, routes and firewalls from "
            f"{'the bastion' if target.jump else 'this machine'} (nc -vz {target.host} "
            f"{target.port}); if the node is only reachable through a bastion, set jump"
        ),
    )


def _connect_timeout(target: SshTarget) -> RemoteError:
    return RemoteError(
        target.name,
        "timeout",
        f"no SSH handshake with {target.address}{_via(target)} within "
        f"{target.connect_timeout:g} s",
        hint=(
            f"the node may be down, overloaded, or a firewall drops packets to port "
            f"{target.port} (nc -vz {target.host} {target.port}); raise connect_timeout "
            "for slow links"
        ),
    )


def _handshake_failed(target: SshTarget, reason: str) -> RemoteError:
    return RemoteError(
        target.name,
        "disconnected",
        f"{target.display}{_via(target)} closed the connection during the SSH handshake: "
        f"{reason}",
        hint=(
            "look at the node's sshd log (journalctl -u ssh): MaxStartups, AllowUsers/DenyUsers, "
            "or no common algorithms are the usual causes"
        ),
    )


def _tunnel_failed(target: SshTarget, exc: asyncssh.ChannelOpenError) -> RemoteError:
    """The bastion answered but could not (or would not) open the tunnel to the node."""
    bastion = target.jump.name if target.jump else "the bastion"
    if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED:
        return RemoteError(
            target.name,
            "jump",
            f"bastion {bastion} refused to open a tunnel to {target.address}: {exc.reason}",
            hint=f"allow TCP forwarding for your user on {bastion} (AllowTcpForwarding yes, PermitOpen)",
        )
    reason = f"bastion {bastion} could not connect to {target.address}: {exc.reason}"
    if "refused" in exc.reason.lower():
        return RemoteError(
            target.name,
            "refused",
            reason,
            hint=f"check that sshd runs on the node and listens on port {target.port}",
        )
    return RemoteError(
        target.name,
        "unreachable",
        reason,
        hint=f"check that {target.host} resolves and is routable from {bastion}",
    )


def jump_failed(target: SshTarget, cause: RemoteError) -> RemoteError:
    """The bastion itself failed: name both, keep the bastion's hint and host-key details."""
    assert target.jump is not None
    return RemoteError(
        target.name,
        "jump",
        f"cannot reach {target.display} through bastion {target.jump.name} "
        f"({target.jump.display}): {cause.message}",
        hint=cause.hint,
        fingerprint=cause.fingerprint,
        known_hosts_line=cause.known_hosts_line,
    )


def command_timeout(target: SshTarget, command: str, timeout: float, *, killed: bool) -> RemoteError:
    fate = "the remote process was killed" if killed else "killing the remote process could not be confirmed"
    return RemoteError(
        target.name,
        "timeout",
        f"command did not finish within {timeout:g} s on {target.display}; {fate}: {_short(command)}",
        hint=(
            "the node may be overloaded or the tool hung (hccn_tool busy, a dead NPU); "
            "rerun, or give this step a longer timeout"
        ),
    )


def command_disconnected(target: SshTarget, command: str, detail: str, *, started: bool = True) -> RemoteError:
    fate = "the command may or may not have completed" if started else "the command was not started"
    return RemoteError(
        target.name,
        "disconnected",
        f"connection to {target.display} was lost while running {_short(command)} ({detail}); {fate}",
        hint="check that the node is up and sshd is running; the next command reconnects",
    )


def session_refused(target: SshTarget, command: str, exc: asyncssh.ChannelOpenError) -> RemoteError:
    return RemoteError(
        target.name,
        "refused",
        f"{target.display} refused to start a command session for {_short(command)}: {exc.reason}",
        hint="check MaxSessions and ForceCommand/Match rules in the node's sshd_config",
    )

"""Where and how to reach one node: everything the remote layer needs, nothing else.

A target is a frozen value so it can key connection caches (two nodes behind the
same bastion share one bastion connection) and be compared in tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class SshTarget:
    """One SSH endpoint. ``name`` appears in every message about it."""

    name: str
    host: str
    port: int = DEFAULT_SSH_PORT
    user: str | None = None
    identity_file: str | None = None  # None: the agent and the default keys
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts
    trust_on_first_use: bool = False
    jump: SshTarget | None = None  # ProxyJump bastion
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        """Fail when the target is built, not minutes later in the middle of a connect."""
        if not self.name or not self.name.strip():
            raise ValueError("SshTarget.name must not be empty: it names the node in every message")
        if not self.host or any(ch.isspace() for ch in self.host):
            raise ValueError(f"node {self.name}: host {self.host!r} is not a host name or address")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"node {self.name}: port {self.port!r} is not an integer in 1..65535")
        if not self.connect_timeout > 0:
            raise ValueError(f"node {self.name}: connect_timeout must be > 0 s, got {self.connect_timeout!r}")

    @classmethod
    def parse_jump(cls, spec: str, defaults: Mapping[str, Any] | SshTarget | None = None) -> SshTarget:
        """:func:`parse_jump` taking the inherited settings from a node's target or ssh-settings mapping.

        From ``defaults`` only identity_file, known_hosts, trust_on_first_use and
        connect_timeout are used (never user, port or jump: those belong to the node).
        """
        return parse_jump(spec, **_inherited(defaults))

    @property
    def address(self) -> str:
        """``host:port`` (IPv6 in brackets), as shown in messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def display(self) -> str:
        """``[user@]host:port``: enough to find the machine and the account."""
        return f"{self.user}@{self.address}" if self.user else self.address


def parse_jump(
    spec: str,
    *,
    identity_file: str | None = None,
    known_hosts: str | None = None,
    trust_on_first_use: bool = False,
    connect_timeout: float = 10.0,
) -> SshTarget:
    """Parse an OpenSSH ProxyJump spec ``[user@]host[:port]`` into a bastion target.

    A comma-separated chain ``a,b`` means "reach b through a", as with ``ssh -J a,b``:
    the result is b with ``jump`` = a. The bastion's name is the spec as written,
    so messages show what the operator typed. The keyword arguments (usually the
    node's own settings) apply to every hop; the user is *not* inherited, as in
    OpenSSH. Raises ValueError on a malformed spec.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("jump spec is empty; expected [user@]host[:port]")
    hop: SshTarget | None = None
    for part in spec.split(","):
        user, host, port = _split_hop(part.strip(), spec)
        hop = SshTarget(
            name=part.strip(),
            host=host,
            port=port,
            user=user,
            identity_file=identity_file,
            known_hosts=known_hosts,
            trust_on_first_use=trust_on_first_use,
            jump=hop,
            connect_timeout=connect_timeout,
        )
    assert hop is not None
    return hop


_INHERITED = ("identity_file", "known_hosts", "trust_on_first_use", "connect_timeout")


def _inherited(defaults: Mapping[str, Any] | SshTarget | None) -> dict[str, Any]:
    if defaults is None:
        return {}
    if isinstance(defaults, SshTarget):
        return {key: getattr(defaults, key) for key in _INHERITED}
    return {key: defaults[key] for key in _INHERITED if defaults.get(key) is not None}


def _split_hop(text: str, spec: str) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` -> (user, host, port); IPv6 needs brackets to carry a port."""
    if not text:
        raise ValueError(f"jump spec {spec!r} has an empty hop; expected [user@]host[:port][,...]")
    user, at, hostport = text.rpartition("@")
    if at and not user:
        raise ValueError(f"jump spec {spec!r}: empty user before '@' in {text!r}")
    host, port_text = _split_host_port(hostport, spec)
    if not host:
        raise ValueError(f"jump spec {spec!r}: no host in {text!r}")
    return (user or None), host, _parse_port(port_text, spec)


def _split_host_port(hostport: str, spec: str) -> tuple[str, str | None]:
    if hostport.startswith("["):
        host, bracket, rest = hostport[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"jump spec {spec!r}: malformed bracketed host {hostport!r}")
        return host, (rest[1:] if rest else None)
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport, None  # plain name, IPv4, or bare IPv6 without a port


def _parse_port(port_text: str | None, spec: str) -> int:
    if port_text is None:
        return DEFAULT_SSH_PORT
    if not (port_text.isascii() and port_text.isdigit()) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"jump spec {spec!r}: port {port_text!r} is not an integer in 1..65535")
    return int(port_text)

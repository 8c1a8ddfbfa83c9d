"""What a launch starts: one `ProcessSpec` per vLLM instance and one for the proxy.

`plan_for(session, deployment)` turns the rendered deployment (pdwizard.render) into specs;
tests and other callers may build `ProcessSpec`s directly (`ProcessSpec.make`) with their own
argv and environment: that is the seam the orchestration is tested through, over real SSH.

A spec's launcher is pdwizard.scripts' script text (the same bash file `--out` writes): the
environment as `export` lines, then `exec` of the argv, every value shell-quoted.

Addresses. The health checks run from this machine: an instance is polled at
`health_host:port`, where `health_host` is the session node's `host` (where SSH connects,
hence reachable from here; vLLM binds 0.0.0.0, so any address of the node answers). The
proxy is polled where it binds (its `--host`). `addresses` (node name -> address) overrides
both and rewrites the proxy's `--host`/`--prefiller-hosts`/`--decoder-hosts`: the simulator
passes each node's loopback `host`, since there the session's node IPs exist only on paper.
Nodes reached through a jump host are polled directly all the same: that needs the ports to
be reachable from this machine.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pdwizard.errors import PdwError
from pdwizard.models import DEFAULT_RUNS_DIR, Session
from pdwizard.render import RenderedDeployment, RenderedInstance, RenderedProxy
from pdwizard.scripts import instance_script, proxy_script

from pdwizard.deploy.runtime import Runtime, runtime_for

ProcessRole = Literal["prefill", "decode", "proxy"]

#: Defaults when the session has no value (see [stack] in pdwizard.models).
DEFAULT_STARTUP_TIMEOUT_S = {"prefill": 1200.0, "decode": 1200.0, "proxy": 60.0}
DEFAULT_STOP_GRACE_S = 30.0
DEFAULT_COMMAND_TIMEOUT_S = 120.0

PROXY_FILE = "proxy.py"  # the builtin proxy's copy in the run directory
_PROXY_HOST_FLAGS = ("--host", "--prefiller-hosts", "--decoder-hosts")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_UNSPECIFIED = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True)
class ProcessSpec:
    """One process to launch on one node, detached, with a pid file and a log in the run dir."""

    name: str                            # file stem in the run dir: "<node>-<role>-<n>"
    node: str
    role: ProcessRole
    port: int                            # where it answers HTTP
    health_host: str                     # the address polled from this machine
    script: str                          # the launcher (bash): exports, then exec of the argv
    argv: tuple[str, ...] = ()           # for display and records
    health_paths: tuple[str, ...] = ("/health",)  # healthy = 200 on any of them
    files: tuple[tuple[str, str], ...] = ()       # (file name in the run dir, text) installed first
    requires: tuple[str, ...] = ()       # paths (absolute, or relative to $HOME) that must exist

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.name):
            raise ValueError(f"process name {self.name!r} cannot name files in the run directory")
        for fname, _ in self.files:
            if not _NAME_RE.fullmatch(fname):
                raise ValueError(f"file name {fname!r} cannot be installed in the run directory")

    @property
    def label(self) -> str:
        """Short human name: "prefill p1:13700"."""
        return f"{self.role} {self.node}:{self.port}"

    @property
    def log_file(self) -> str:
        return f"{self.name}.log"

    @classmethod
    def make(cls, name: str, node: str, role: ProcessRole, port: int, argv: Sequence[str], *,
             health_host: str, env: Sequence[tuple[str, str]] = (), health_paths: Sequence[str] = ("/health",),
             files: Sequence[tuple[str, str]] = (), requires: Sequence[str] = ()) -> ProcessSpec:
        """A spec from an argv and an environment, with the launcher written by pdwizard.scripts."""
        if role == "proxy":
            script = proxy_script(RenderedProxy(node=node, kind="builtin", argv=list(argv), env=list(env)))
        else:
            script = instance_script(RenderedInstance(index=0, role=role, node=node, ordinal=0,
                                                      env=list(env), argv=list(argv)))
        return cls(name=name, node=node, role=role, port=port, health_host=health_host, script=script,
                   argv=tuple(argv), health_paths=tuple(health_paths), files=tuple(files),
                   requires=tuple(requires))


@dataclass(frozen=True)
class DeployPlan:
    """Everything a launch needs, and nothing from memory that stop/status would lack later."""

    session: str                         # session name: the run dir is ~/.pdwizard/runs/<session>/
    processes: tuple[ProcessSpec, ...]   # instances first, then the proxy (if any)
    runtime: Runtime = field(default_factory=Runtime)
    startup_timeout_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STARTUP_TIMEOUT_S))
    stop_grace_s: float = DEFAULT_STOP_GRACE_S
    command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S
    ranktable_path: str | None = None    # where `launch(..., ranktable=)` installs it on instance nodes
    proxy_with_instances: bool = False   # start the proxy with the instances (polled once they are healthy)

    def __post_init__(self) -> None:
        if not _NAME_RE.fullmatch(self.session):
            raise ValueError(f"session name {self.session!r} cannot name a run directory")
        names = [p.name for p in self.processes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"process names used twice: {', '.join(dup)}")
        if sum(1 for p in self.processes if p.role == "proxy") > 1:
            raise ValueError("a plan holds at most one proxy")

    @property
    def instances(self) -> list[ProcessSpec]:
        return [p for p in self.processes if p.role != "proxy"]

    @property
    def proxy(self) -> ProcessSpec | None:
        return next((p for p in self.processes if p.role == "proxy"), None)

    @property
    def nodes(self) -> list[str]:
        """Nodes with anything to run, in first-use order."""
        return list(dict.fromkeys(p.node for p in self.processes))

    def on(self, node: str) -> list[ProcessSpec]:
        return [p for p in self.processes if p.node == node]

    def timeout_for(self, role: str) -> float:
        return float(self.startup_timeout_s.get(role, DEFAULT_STARTUP_TIMEOUT_S.get(role, 600.0)))


def run_dir(session: str) -> str:
    """The run directory relative to the node's $HOME: `.pdwizard/runs/<session>`."""
    return f"{DEFAULT_RUNS_DIR.removeprefix('~/')}/{session}"


def health_host(session: Session, node: str, addresses: Mapping[str, str] | None = None) -> str:
    """The address this machine polls for `node`: addresses[node], else the node's SSH host."""
    if addresses and node in addresses:
        return addresses[node]
    return session.node(node).host


def builtin_proxy_text() -> str:
    """pdwizard/proxy.py (one self-contained file: aiohttp + stdlib), to copy to the proxy node."""
    try:
        return importlib.resources.files("pdwizard").joinpath(PROXY_FILE).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as exc:
        raise PdwError(f"pdwizard's proxy ({PROXY_FILE}) is not in this installation: {exc}",
                       hint='set [proxy] kind = "upstream" to run vllm-ascend\'s example proxy instead') from None


def plan_for(session: Session, deployment: RenderedDeployment, *, addresses: Mapping[str, str] | None = None,
             proxy_text: str | None = None, with_proxy: bool = True) -> DeployPlan:
    """The launch plan of a rendered deployment (see the module docstring for `addresses`).

    The builtin proxy runs as `python3 .pdwizard/runs/<session>/proxy.py <rendered flags>` from
    $HOME (the launcher's working directory), after pdwizard/proxy.py (or `proxy_text`) is
    installed there; the upstream one as rendered (`python <[proxy] script> <flags>`), its
    script path relative to $HOME unless absolute, checked to exist before anything starts.
    """
    describe = deployment.connector.kv_connector
    processes: list[ProcessSpec] = []
    for r in deployment.instances:
        inst = session.instances[r.index]
        processes.append(ProcessSpec(
            name=r.script_name.removesuffix(".sh"), node=r.node, role=inst.role, port=inst.port,
            health_host=health_host(session, r.node, addresses),
            script=instance_script(r, session_name=session.name, profile=describe), argv=tuple(r.argv)))
    if with_proxy and deployment.proxy is not None:
        processes.append(_proxy_spec(session, deployment.proxy, addresses, proxy_text))
    stack = session.stack
    timeouts = {
        "prefill": float(getattr(stack, "prefill_startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S["prefill"])),
        "decode": float(getattr(stack, "decode_startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S["decode"])),
        "proxy": float(getattr(stack, "proxy_startup_timeout_s", DEFAULT_STARTUP_TIMEOUT_S["proxy"])),
    }
    return DeployPlan(
        session=session.name, processes=tuple(processes), runtime=runtime_for(session),
        startup_timeout_s=timeouts, stop_grace_s=float(getattr(stack, "stop_grace_s", DEFAULT_STOP_GRACE_S)),
        command_timeout_s=float(session.ssh.command_timeout), ranktable_path=session.ranktable_path,
        # pdwizard's proxy keeps a backend out of rotation until it answers, so it may start with
        # the instances (its start-up then overlaps theirs); the example proxy waits for them
        proxy_with_instances=with_proxy and deployment.proxy is not None and deployment.proxy.kind == "builtin",
    )


def _proxy_spec(session: Session, rendered: RenderedProxy, addresses: Mapping[str, str] | None,
                proxy_text: str | None) -> ProcessSpec:
    argv = list(rendered.argv)
    first_flag = next((i for i, a in enumerate(argv) if a.startswith("--")), len(argv))
    flags = _readdress(session, argv[first_flag:], addresses) if addresses else argv[first_flag:]
    files: tuple[tuple[str, str], ...] = ()
    requires: tuple[str, ...] = ()
    if rendered.kind == "builtin":
        text = proxy_text if proxy_text is not None else builtin_proxy_text()
        argv = ["python3", f"{run_dir(session.name)}/{PROXY_FILE}", *flags]
        files = ((PROXY_FILE, text),)
        paths: tuple[str, ...] = ("/healthcheck", "/health")
    else:
        argv = [*argv[:first_flag], *flags]
        if len(argv) > 1:
            argv[1] = argv[1].removeprefix("~/")  # the launcher runs from $HOME; argv has no ~ expansion
            requires = (argv[1],)
        paths = ("/healthcheck",)
    bind = _flag_value(flags, "--host")
    host = bind if bind not in _UNSPECIFIED and bind is not None else health_host(session, rendered.node, addresses)
    r = RenderedProxy(node=rendered.node, kind=rendered.kind, argv=argv, env=list(rendered.env),
                      notes=list(rendered.notes), comments=dict(rendered.comments))
    return ProcessSpec(
        name=f"{rendered.node}-proxy-0", node=rendered.node, role="proxy", port=session.proxy.port,
        health_host=host, script=proxy_script(r, session_name=session.name), argv=tuple(argv),
        health_paths=paths, files=files, requires=requires)


def _readdress(session: Session, flags: list[str], addresses: Mapping[str, str]) -> list[str]:
    """Replace the proxy's host values by `addresses`, node by node (the rendered order)."""
    nodes = {
        "--host": [session.proxy_node().name],
        "--prefiller-hosts": [i.node for i in session.prefills()],
        "--decoder-hosts": [i.node for i in session.decodes()],
    }
    out: list[str] = []
    i = 0
    while i < len(flags):
        flag = flags[i]
        out.append(flag)
        i += 1
        values: list[str] = []
        while i < len(flags) and not flags[i].startswith("--"):
            values.append(flags[i])
            i += 1
        owners = nodes.get(flag)
        if flag in _PROXY_HOST_FLAGS and owners and len(owners) == len(values):
            values = [addresses.get(n, v) for n, v in zip(owners, values)]
        out.extend(values)
    return out


def _flag_value(flags: Sequence[str], flag: str) -> str | None:
    for i, a in enumerate(flags):
        if a == flag and i + 1 < len(flags):
            return flags[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


__all__ = [
    "DEFAULT_STARTUP_TIMEOUT_S",
    "DEFAULT_STOP_GRACE_S",
    "DeployPlan",
    "PROXY_FILE",
    "ProcessSpec",
    "builtin_proxy_text",
    "health_host",
    "plan_for",
    "run_dir",
]

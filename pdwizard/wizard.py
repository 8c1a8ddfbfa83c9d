"""The interactive session's state and actions, without Textual.

The TUI's screens only show and ask; everything they do goes through a `Wizard`, which
drives the same core as `pdwizard --replay`: connect and discover (`flow`), the fabric
checks (`CheckFlow`), preflight, the ranktable and the commands (`artifacts`), the
launch, logs and stop (`deploy`), prompts through the proxy (`verify`), and the session
file (`session`). The session being edited is plain TOML data (`data`), validated on
demand: a half-built session (no instances yet) is normal while the operator works.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import ipaddress
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from pdwizard import artifacts, deploy, verify
from pdwizard.deploy.restart import RestartResult, restart as restart_process
from pdwizard.errors import InputError, PdwError, RemoteError
from pdwizard.fsutil import atomic_write_text
from pdwizard.flow import CheckFlow, RerunScope, connect_nodes, discover_nodes, merge_fabric
from pdwizard.models import Node, Session, SshDefaults, Verify
from pdwizard.nodechecks import selected_devices
from pdwizard.pingplan import PingPlan
from pdwizard.progress import Progress
from pdwizard.remote.pool import CommandResult, RemotePool
from pdwizard.remote.target import SshTarget
from pdwizard.replay import node_target, sim_target
from pdwizard.report import CheckResult, NodeFacts, Report, Status, StepReport
from pdwizard.scripts import script_texts
from pdwizard.session import (SESSION_FILE_MODE, SessionError, find_secret_keys, save_session, session_to_toml,
                              validate_session)

#: A new session: nodes, instances and the model are filled in by the wizard's steps.
NEW_SESSION: dict[str, Any] = {"schema_version": 1, "name": "pd-session", "ssh": {"user": "root"},
                               "nodes": [], "instances": [], "model": {}}
#: The model path the fabric checks run with before the model step sets one: the checks do not
#: read it (preflight, which does, runs on the complete session).
_PLACEHOLDER_MODEL = {"path": "/model"}


class QuietProgress:
    """A Progress that shows nothing (for callers that only want the results)."""

    def begin(self, nodes: list[str]) -> None: ...
    def node(self, node: str, text: str, status: Status | None = None) -> None: ...
    def say(self, text: str) -> None: ...
    def command(self, result: CommandResult) -> None: ...
    def end(self) -> None: ...


@dataclass
class Preview:
    """What the preview step shows: nothing here has touched a node yet except discovery."""

    session: Session
    artifacts: artifacts.Artifacts | None
    scripts: dict[str, str]                     # file name -> script text (instances, then proxy.sh)
    preflight: list[CheckResult]
    errors: list[InputError] = field(default_factory=list)

    @property
    def blocking(self) -> list[str]:
        """Why the deployment cannot be launched from this preview ([] when it can)."""
        out = [str(e) for e in self.errors]
        out += [f"{r.where}: {r.message or r.value}" for r in self.preflight if r.status is Status.FAIL]
        return out


class Wizard:
    """One interactive session: the data being edited, the connections, and what was found."""

    def __init__(self, data: dict[str, Any] | None = None, *, source: Path | None = None,
                 sim_spec: Path | None = None) -> None:
        self.sim_spec = sim_spec
        self.cluster: Any = None                      # the SimCluster when simulated
        self.pool: RemotePool | None = None
        self.on_command: Callable[[CommandResult], None] | None = None
        self._forget(data, source)

    def _forget(self, data: dict[str, Any] | None, source: Path | None) -> None:
        self.data: dict[str, Any] = copy.deepcopy(data if data is not None else NEW_SESSION)
        self.source = source
        self.report = _report(self.data)
        self.connect_errors: dict[str, RemoteError | None] = {}
        self.facts: dict[str, NodeFacts] = {}
        self.flow: CheckFlow | None = None
        self.fabric_step: StepReport | None = None
        self.node_step: StepReport | None = None
        self.preview: Preview | None = None
        self.plan: deploy.DeployPlan | None = None
        self.launch_result: deploy.LaunchResult | None = None
        self.running = False                           # a launch succeeded and was not stopped yet
        self.launched: Session | None = None           # the session as last launched (its name, model)
        self.history: list[verify.VerifyOutcome] = []
        self._read_upto: dict[str, int] = {}

    # ------------------------------------------------------------------ session data

    @classmethod
    def open(cls, path: Path, *, sim_spec: Path | None = None) -> Wizard:
        """A session file, possibly incomplete (no instances yet): read as data, validated later."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read {path}: {exc}", key="session",
                             hint="check the path and that the file is readable") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{path}: not valid TOML: {exc}", key="session",
                             hint="fix the line named, or start a new session") from None
        secrets = find_secret_keys(data)
        if secrets:
            raise InputError(f"{path}: holds secret keys ({', '.join(secrets)})", key=secrets[0],
                             hint="session files never hold passwords or keys' passphrases: remove them")
        return cls(data, source=path, sim_spec=sim_spec)

    async def replace(self, data: dict[str, Any] | None, source: Path | None = None) -> None:
        """Work on another session (new or opened): connections and findings are dropped, the
        simulated cluster (if any) stays. Refused while a deployment runs."""
        if self.running:
            raise PdwError("a deployment is running", hint="stop it in the launch step first")
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        self._forget(data, source)

    @property
    def simulated(self) -> bool:
        return self.sim_spec is not None or any(f.sim_host for f in self.facts.values())

    @property
    def name(self) -> str:
        return str(self.data.get("name") or "pd-session")

    def session(self) -> Session:
        """The complete session; SessionError lists every problem with its key."""
        return validate_session(self.data, source=str(self.source) if self.source else None)

    def problems(self, prefix: str = "") -> list[InputError]:
        """The session's problems whose key starts with `prefix` ([] when it validates)."""
        try:
            self.session()
        except SessionError as exc:
            return [p for p in exc.problems if (p.key or "").startswith(prefix)]
        return []

    def checks_session(self) -> Session:
        """The session the fabric checks run: the model may not be chosen yet."""
        data = copy.deepcopy(self.data)
        try:
            validate_session(data)
        except SessionError as exc:
            if all((p.key or "").startswith("model") for p in exc.problems):
                data["model"] = dict(_PLACEHOLDER_MODEL)
        return validate_session(data)

    def export_text(self) -> str:
        """The session file as it would be written (validated: SessionError if incomplete)."""
        return session_to_toml(self.session())

    def export(self, path: Path) -> Path:
        """Write the session file atomically (the previous file stays whole if this fails)."""
        written = save_session(self.session(), path)
        self.source = written
        return written

    def draft_text(self) -> str:
        """An incomplete session as TOML, headed by what it still lacks: `pdwizard --open FILE`
        carries on from it, `--replay` refuses it naming the same keys."""
        head = ["# pdwizard session DRAFT: incomplete; --replay refuses it until these are fixed",
                "# (pdwizard --open FILE carries on from here):"]
        head += [f"#   {str(p).splitlines()[0]}" for p in self.problems()]
        return "\n".join(head) + "\n\n" + tomli_w.dumps(_without_none(self.data))

    def export_draft(self, path: Path) -> Path:
        """Write the incomplete session atomically (0600, like a session file); never a secret."""
        secrets = find_secret_keys(self.data)
        if secrets:
            raise InputError(f"the session holds secret keys ({', '.join(secrets)})", key=secrets[0],
                             hint="remove them: session files never hold passwords or passphrases")
        try:
            written = atomic_write_text(path, self.draft_text(), mode=SESSION_FILE_MODE)
        except OSError as exc:
            raise PdwError(f"{path}: cannot write the draft: {exc.strerror or exc}",
                           hint="check that the directory exists and is writable") from exc
        self.source = written
        return written

    def set_nodes(self, nodes: Sequence[dict[str, Any]]) -> None:
        """Replace the node list; what was found about removed or changed nodes is forgotten."""
        old = {n.get("name"): n for n in self.data.get("nodes", [])}
        self.data["nodes"] = [dict(n) for n in nodes]
        for n in self.data["nodes"]:
            if old.get(n.get("name")) != n:
                self.facts.pop(n.get("name"), None)
                self.connect_errors.pop(n.get("name"), None)
        names = {n.get("name") for n in self.data["nodes"]}
        for gone in set(self.facts) - names:
            self.facts.pop(gone, None)
        self.data["instances"] = [i for i in self.data.get("instances", []) if i.get("node") in names]
        self.changed("nodes")

    def changed(self, what: str) -> None:
        """The operator changed `what` ("nodes", "instances", "model", "stack", "proxy"): forget
        the results that depended on it, so the later steps run again instead of showing stale ones."""
        if what in ("nodes", "instances"):
            self.fabric_step = None
            self.node_step = None
        self.preview = None

    # ------------------------------------------------------------------ connections

    async def start(self) -> None:
        """Start the simulated cluster when the session is simulated (the demo)."""
        if self.sim_spec is not None and self.cluster is None:
            from pdwizard.sim import SimCluster, load_spec

            self.cluster = SimCluster(load_spec(self.sim_spec))
            await self.cluster.start()

    async def close(self) -> None:
        """Close the connections and stop the simulated cluster (its processes die with it)."""
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None

    def targets(self) -> list[SshTarget]:
        """One SSH target per node of the data (a simulated node uses the simulator's keys)."""
        ssh = SshDefaults.model_validate(self.data.get("ssh", {}))
        nodes = [Node.model_validate(n) for n in self.data.get("nodes", [])]
        shell = Session.model_construct(ssh=ssh, nodes=nodes)
        targets = [node_target(shell, node) for node in nodes]
        if self.cluster is None:
            return targets
        return [sim_target(t, self.cluster) or t for t in targets]

    async def _pool(self) -> RemotePool:
        """The pool for the current nodes; rebuilt (old connections closed) when they changed."""
        targets = self.targets()
        if self.pool is not None and [self.pool.target(n) for n in self.pool.nodes] == targets:
            return self.pool
        if self.pool is not None:
            await self.pool.close()
        self.pool = RemotePool(targets, on_command=self._command)
        return self.pool

    def _command(self, result: CommandResult) -> None:
        if self.on_command is not None:
            self.on_command(result)

    async def connect(self, progress: Progress | None = None,
                      nodes: Sequence[str] | None = None) -> dict[str, RemoteError | None]:
        """Connect `nodes` (default: every node) in parallel; per node its RemoteError or None."""
        pool = await self._pool()
        names = list(nodes) if nodes is not None else pool.nodes
        errors = await connect_nodes(pool, names, progress or QuietProgress(), self.report.step("connect"))
        self.connect_errors.update(errors)
        return errors

    async def trust(self, node: str) -> str:
        """Record the host key `node` presents now, on the operator's word; the known_hosts line."""
        pool = await self._pool()
        return await pool.trust_host_key(node)

    async def discover(self, progress: Progress | None = None,
                       nodes: Sequence[str] | None = None) -> dict[str, NodeFacts]:
        """Discovery of the reachable nodes (one round trip each): SoC, NPUs, IPs, health, users."""
        pool = await self._pool()
        names = [n for n in (nodes if nodes is not None else pool.nodes) if self.connect_errors.get(n, 1) is None]
        container = (self.data.get("stack") or {}).get("container")
        found = await discover_nodes(pool, names, progress or QuietProgress(), self.report.step("discovery"),
                                     container=container, timeout_base=self._command_timeout())
        self.facts.update(found)
        self.report.nodes.update(found)
        return found

    def _command_timeout(self) -> float:
        return float((self.data.get("ssh") or {}).get("command_timeout", 60.0))

    # ------------------------------------------------------------------ step 2, Nodes
    # What the Nodes step needs beyond connect / trust / discover: editing entries (a renamed
    # node keeps its instances), the key to ask about, and the node ip / nic the operator picks
    # among what discovery found (kept when the session's values are among them).

    def node_entry_problems(self, node: dict[str, Any], index: int | None = None) -> list[InputError]:
        """What is wrong with `node` as entry `index` of the node list (None: a new last entry),
        including a name another entry already has; its keys read `nodes[i].<key>`. A missing ip
        is not a problem here: the node ip is picked after discovery."""
        nodes = [dict(n) for n in self.data.get("nodes", [])]
        at = len(nodes) if index is None else index
        out = [InputError(f"node name {node.get('name')!r} is already used by nodes[{j}]", key=f"nodes[{at}].name",
                          hint="give every node its own name")
               for j, n in enumerate(nodes) if j != at and n.get("name") == node.get("name")][:1]
        shell = {"schema_version": 1, "name": "node-check", "nodes": [dict(node)], "instances": [],
                 "model": dict(_PLACEHOLDER_MODEL)}
        try:
            validate_session(shell)
        except SessionError as exc:
            out += [InputError(p.message.removeprefix(f"{p.key}: "), key=f"nodes[{at}]" + p.key[len("nodes[0]"):],
                               hint=p.hint)
                    for p in exc.problems if p.key and p.key.startswith("nodes[0]")
                    and ("ip" in node or p.key != "nodes[0].ip")]
        return out

    def put_node(self, node: dict[str, Any], index: int | None = None) -> None:
        """Add `node` (index None) or replace entry `index`; a renamed node keeps its instances."""
        nodes = [dict(n) for n in self.data.get("nodes", [])]
        if index is None:
            nodes.append(dict(node))
        else:
            old = nodes[index].get("name")
            nodes[index] = dict(node)
            for inst in self.data.get("instances", []):
                if inst.get("node") == old:
                    inst["node"] = node.get("name")
        self.set_nodes(nodes)

    def remove_node(self, name: str) -> int:
        """Remove node `name` and the instances on it; how many instances went with it."""
        before = len(self.data.get("instances", []))
        self.set_nodes([n for n in self.data.get("nodes", []) if n.get("name") != name])
        return before - len(self.data.get("instances", []))

    def untrusted_key(self, name: str) -> RemoteError | None:
        """The unknown host key `name`'s connection met (on the node or its bastion), to ask the
        operator about; None when there is none. A changed key is never offered."""
        err = self.connect_errors.get(name)
        if err is not None and err.kind == "jump" and isinstance(err.__cause__, RemoteError):
            err = err.__cause__
        return err if err is not None and err.kind == "host_key_unknown" and err.fingerprint else None

    def known_hosts_file(self, name: str) -> Path:
        """The known_hosts file that decides which host keys node `name` may present."""
        from pdwizard.remote.hostkeys import known_hosts_path

        return known_hosts_path(next(t for t in self.targets() if t.name == name))

    async def trust_and_connect(self, name: str, progress: Progress | None = None) -> str:
        """Record the key `name` presents (the operator accepted it), then connect and discover it;
        the known_hosts line. A key other than the one shown is refused: that RemoteError is
        raised and kept as the node's connection error."""
        try:
            line = await self.trust(name)
        except RemoteError as exc:
            self.connect_errors[name] = exc
            raise
        if not (await self.connect(progress, [name]))[name]:
            await self.discover(progress, [name])
        return line

    def address_choices(self, name: str) -> list[tuple[str, str | None]]:
        """The (IPv4, nic) pairs discovery found on `name`, loopback left out; addresses of no
        known NIC (no `ip addr` output) come with nic None."""
        facts = self.facts.get(name)
        if facts is None:
            return []
        pairs = [(a, nic) for nic, addrs in facts.nics.items() for a in addrs if _usable_ipv4(a)]
        held = {a for a, _ in pairs}
        return pairs + [(a, None) for a in facts.addresses if _usable_ipv4(a) and a not in held]

    def node_address(self, name: str) -> tuple[str | None, str | None, bool]:
        """(ip, nic, kept) of discovered node `name`: its session values when discovery found them
        (kept True); else a proposal (kept False) the operator must confirm: the session ip on the
        NIC that holds it, or the address on the node's default NIC (the one holding the first
        address `hostname -I` lists)."""
        node = next(n for n in self.data.get("nodes", []) if n.get("name") == name)
        choices = self.address_choices(name)
        ip, nic = node.get("ip") or node.get("host"), node.get("nic")
        on = [c for c in choices if c[0] == ip]
        if on and (nic is None or (ip, nic) in choices):
            return ip, nic or on[0][1], True
        first = self.facts[name].addresses if name in self.facts else []
        default = on or [c for a in first for c in choices if c[0] == a] or choices
        return (default[0][0], default[0][1], False) if default else (None, None, False)

    def pick_address(self, name: str, ip: str, nic: str | None) -> bool:
        """Write the node ip and nic the operator picked; True (and later steps re-run) when that
        changes what the node uses, False when it only confirms it."""
        node = next(n for n in self.data.get("nodes", []) if n.get("name") == name)
        before = self.node_address(name)
        node["ip"] = ip
        if nic is None:
            node.pop("nic", None)
        else:
            node["nic"] = nic
        if before[2] and before[:2] == (ip, nic or before[1]):
            return False
        self.changed("nodes")
        return True

    def connect_problems(self) -> list[str]:
        """What keeps every connection from being tried: a node entry or [ssh] that does not
        validate ([] when none does)."""
        out = [f"fix [ssh] {(p.key or '').removeprefix('ssh.')}" for p in self.problems("ssh")][:1]
        for i, node in enumerate(self.data.get("nodes") or []):
            problems = self.node_entry_problems(node, i)
            if problems:
                out.append(f"node {node.get('name') or i + 1}: fix {(problems[0].key or '').split('.')[-1]}")
        return out

    def node_blockers(self) -> list[str]:
        """Why the node list is not ready for the next steps, most basic first ([] when it is)."""
        nodes = self.data.get("nodes") or []
        if not nodes:
            return ["add at least one node"]
        out = self.connect_problems()
        names = [str(n.get("name")) for n in nodes]
        down = [n for n in names if self.connect_errors.get(n, 1) is not None]
        if len(down) == 1:
            out.append(f"node {down[0]} is not connected")
        elif down:
            out.append(f"{len(down)} nodes not connected")
        out += [f"node {n} is not discovered" for n in names if n not in down and n not in self.facts]
        out += [f"node {n}: pick its node ip" for n in names if n in self.facts and not self.node_address(n)[2]]
        return out

    # ------------------------------------------------------------------ checks and preview

    async def run_checks(self, progress: Progress | None = None,
                         on_results: Callable[[str, list[CheckResult]], None] | None = None,
                         rerun: Sequence[CheckResult] | None = None, *, discover: bool = False) -> StepReport:
        """Node checks and the fabric checks with the ping matrix; returns this run's fabric step.

        `rerun`: repeat only what is behind these (failed) verdicts (see flow.RerunScope: nodes
        whose verdicts come from discovery are discovered again) and merge the fresh verdicts into
        the last run; with no last run, or when discovering again changed the NPU addresses the
        ping plan was made from, the fabric checks run in full. `discover`: a full run that discovers
        every node again first (the operator fixed something on a node). `on_results(node,
        results)` hears each node's verdicts as soon as they are known. A run during which the
        nodes or the instances changed is dropped (PdwError): its verdicts would be stale."""
        if self.fabric_step is None:
            rerun = None
        checked = self._checked_input()
        session = self.checks_session()
        again = self._to_discover(session, rerun, discover)
        lost = await self._rediscover(progress, again) if again else []
        flow = self._flow(session, progress)
        flow.on_results = on_results
        node_step = self._node_step(flow, session, lost) if rerun is None or again else None
        if node_step is not None and on_results is not None:
            for name in [n.name for n in session.nodes if rerun is None or n.name in again]:
                on_results(name, [r for r in node_step.results if r.node == name])
        if rerun is not None and again and (flow.ping_plan is None or flow.plan().by_node != flow.ping_plan.by_node):
            rerun = None  # discovery found other NPU addresses: the last ping plan is stale, run it all
        step = await flow.fabric(rerun=rerun)
        if self._checked_input() != checked:
            raise PdwError("the nodes or instances changed while the checks ran: their results were dropped",
                           hint="run the checks again")
        if rerun is None:
            self.fabric_step = step
        else:
            assert self.fabric_step is not None
            self.fabric_step = merge_fabric(self.fabric_step, step, rerun)
        if node_step is not None:
            self.node_step = node_step
        return step

    def _checked_input(self) -> Any:
        """What the checks' verdicts depend on in the session data."""
        return copy.deepcopy([self.data.get(k) for k in ("nodes", "instances", "checks", "ssh")])

    def _to_discover(self, session: Session, rerun: Sequence[CheckResult] | None, discover: bool) -> list[str]:
        if rerun is not None:
            return sorted(RerunScope.of(rerun).discover)
        return [n.name for n in session.nodes if self.connect_errors.get(n.name, 1) is None] if discover else []

    async def _rediscover(self, progress: Progress | None, nodes: list[str]) -> list[CheckResult]:
        """Discover `nodes` again; the verdicts of those that could not be discovered."""
        await self.discover(progress, nodes=nodes)
        step = [s for s in self.report.steps if s.name == "discovery"][-1]
        return [r for r in step.results if r.check == "discovery" and r.status is Status.FAIL]

    @staticmethod
    def _node_step(flow: CheckFlow, session: Session, lost: list[CheckResult]) -> StepReport:
        """The node checks, with a failure for every node that was not discovered."""
        step = flow.check_nodes()
        for r in lost:
            step.add(r)
        told = {r.node for r in lost}
        for node in session.nodes:
            if node.name not in flow.facts and node.name not in told:
                step.add(CheckResult(check="discovery", node=node.name, status=Status.FAIL, value="not discovered",
                                     message="the node is not connected, so nothing on it was checked",
                                     hint="connect it in the Nodes step (or remove it), then re-run the checks"))
        step.finish(step.duration_s)
        return step

    def _flow(self, session: Session, progress: Progress | None) -> CheckFlow:
        assert self.pool is not None, "connect first"
        flow = CheckFlow(session, self.pool, self.report, progress or QuietProgress())
        flow.facts = dict(self.facts)
        flow.reachable = [n for n, e in self.connect_errors.items() if e is None]
        if self.flow is not None:
            flow.ping_plan = self.flow.ping_plan
        self.flow = flow
        return flow

    def check_results(self) -> list[CheckResult]:
        """Every node and fabric verdict of the last checks (re-runs merged in)."""
        out = list(self.node_step.results) if self.node_step is not None else []
        return out + (list(self.fabric_step.results) if self.fabric_step else [])

    # ------------------------------------------------------------------ step 4, Fabric checks

    def check_targets(self) -> list[tuple[str, list[int]]]:
        """Each node with the NPUs its instances use, in session order: what the checks cover
        (the check table's rows); [] while the session cannot be checked yet."""
        try:
            session = self.checks_session()
        except SessionError:
            return []
        return list(selected_devices(session).items())

    @property
    def ping_plan(self) -> PingPlan | None:
        """The ping plan of the last (or running) checks; None before any."""
        return self.flow.ping_plan if self.flow is not None else None

    def failed_checks(self) -> list[CheckResult]:
        """The failing verdicts of the last checks: what "re-run failed" repeats, what blocks Next
        (like the replay, which launches nothing after a failed check; warnings do not block)."""
        return [r for r in self.check_results() if r.status is Status.FAIL]

    def checks_blocker(self) -> str | None:
        """Why the checks cannot run yet (None when they can)."""
        if self.pool is None or not self.facts:
            return "connect and discover the nodes first (Nodes step)"
        if not self.data.get("instances"):
            return "choose the prefill and decode instances first (Topology step)"
        return None

    async def build_preview(self, progress: Progress | None = None) -> Preview:
        """Discover the model where it is served, run preflight, render the commands and the ranktable."""
        session = self.session()
        pool = await self._pool()
        flow = CheckFlow(session, pool, self.report, progress or QuietProgress())
        flow.reachable = [n for n, e in self.connect_errors.items() if e is None]
        await flow.discover()
        self.facts.update(flow.facts)
        errors = flow.input_errors(str(self.source) if self.source else None)
        preflight: list[CheckResult] = []
        art = None
        if not errors:
            errors = flow.preflight()
            preflight = list(self.report.steps[-1].results)
        if not errors:
            try:
                art = artifacts.build(session, self.facts)
            except InputError as exc:
                errors = [exc]
        scripts = script_texts(art.deployment, session_name=session.name) if art else {}
        self.preview = Preview(session, art, scripts, preflight, list(errors))
        return self.preview

    def save_scripts(self, directory: Path) -> list[Path]:
        """Write the ranktable and every script of the preview into `directory`."""
        if self.preview is None or self.preview.artifacts is None:
            raise PdwError("nothing to save yet", hint="open the preview step first")
        art = dataclasses.replace(self.preview.artifacts, written=[])
        return artifacts.write(art, self.preview.session, directory).written

    # ------------------------------------------------------------------ step 5, Model and stack

    def default_of(self, key: str) -> Any:
        """What a [model], [stack] or [proxy] key ("model.max_model_len") is when the session
        leaves it out; None when it has no default or one derived elsewhere (served_name, the
        proxy node, the profile's connector)."""
        from pdwizard.models import ModelSpec, Proxy, Stack

        table, name = key.split(".", 1)
        spec = {"model": ModelSpec, "stack": Stack, "proxy": Proxy}[table].model_fields[name]
        return None if spec.is_required() else spec.get_default(call_default_factory=True)

    def set_value(self, key: str, value: Any) -> None:
        """Set a [model], [stack] or [proxy] key as the operator gave it; None removes it (and an
        emptied [stack] or [proxy] table), so the exported session holds only what was set."""
        table, name = key.split(".", 1)
        values = self.data.setdefault(table, {})
        if value is not None:
            values[name] = value
            return
        values.pop(name, None)
        if not values and table != "model":
            del self.data[table]

    @staticmethod
    def typed(text: str, kind: type) -> Any:
        """The TOML value typed text stands for: a number when `kind` is int or float and the text
        reads as one (a decimal where an int is wanted stays a float, so validation names it),
        else the text itself; None for empty text, which removes the key."""
        text = text.strip()
        if not text or kind is str:
            return text or None
        for convert in (int, float) if kind is int else (float,):
            try:
                return convert(text)
            except ValueError:
                pass
        return text

    def model_problems(self) -> list[InputError]:
        """What the model step flags: the problems of [model], [stack] and [proxy] first, then
        the rest of the session's; once the session validates, the render problems (a flag or
        key the version profile refuses, each under its session key)."""
        from pdwizard.render import render_problems

        try:
            session = self.session()
        except SessionError as exc:
            mine = [p for p in exc.problems if (p.key or "").split(".")[0] in ("model", "stack", "proxy")]
            return mine + [p for p in exc.problems if p not in mine]
        return render_problems(session, source=str(self.source) if self.source else None)

    # ------------------------------------------------------------------ launch, logs, stop

    def addresses(self, session: Session) -> dict[str, str] | None:
        """Where this machine reaches each node's ports: the simulator's loopback addresses."""
        if self.cluster is not None:
            return deploy.sim_addresses(session)
        simulated = {n: f.sim_host for n, f in self.facts.items() if f.sim_host}
        return simulated or None

    async def launch(self, observer: deploy.LaunchObserver | None = None) -> deploy.LaunchResult:
        """Upload the ranktable and start every instance and the proxy (all or nothing)."""
        preview = self.preview
        if preview is None or preview.artifacts is None or preview.blocking:
            raise PdwError("the preview has problems: nothing launched", hint="fix them in the preview step")
        session, art = preview.session, preview.artifacts
        pool = await self._pool()
        self.plan = deploy.plan_for(session, art.deployment, addresses=self.addresses(session))
        ranktable = art.ranktable
        if self.plan.runtime.container is None and art.ranktable is not None:
            step = self.report.step("ranktable")
            await artifacts.upload(pool, session, art, step)
            step.finish(0.0)
            if step.status is Status.FAIL:
                raise PdwError("; ".join(f"{r.node}: {r.message}" for r in step.failures()),
                               hint="check the ranktable directory on those nodes")
            ranktable = None
        self.launch_result = await deploy.launch(pool, self.plan, observer=observer, ranktable=ranktable,
                                                 poll_interval=0.2, liveness_interval=1.0)
        self.running = self.launch_result.ok
        self.launched = session
        self._read_upto = {}
        return self.launch_result

    def log_tail(self, on_line: Callable[[deploy.LogLine], None] | None = None,
                 max_lines: int = 2000) -> deploy.LogTail:
        """A live tail of every launched process's log (start it, then close it)."""
        assert self.pool is not None and self.plan is not None, "launch first"
        return deploy.LogTail(self.pool, self.plan.session, deploy.LogSource.of(self.plan.processes),
                              runtime=self.plan.runtime, max_lines=max_lines, on_line=on_line)

    async def stop(self) -> deploy.StopReport:
        """Stop every process of the session on every node, and forget the launch. The session
        as launched names the run directories: edits made since (a new name) do not matter."""
        pool = await self._pool()
        report = await deploy.stop_session(pool, self.launched or self.session())
        self.running = not report.ok
        return report

    async def send_prompt(self, prompt: str, *, max_tokens: int = 100,
                          on_text: Callable[[str], None] | None = None) -> verify.VerifyOutcome:
        """One prompt through the proxy, streamed; judged like a [[verify]] (served by, recompute).
        Refused (PdwError) while nothing runs: the proxy would only refuse the connection."""
        if not self.running or self.pool is None or self.plan is None:
            raise PdwError("nothing is running: no proxy to send the prompt to",
                           hint="launch the deployment in the Launch step first")
        if not prompt.strip():
            raise InputError("the prompt is empty", key="prompt", hint="type a prompt, e.g. Who are you?")
        problem = self.max_tokens_problem(str(max_tokens))
        if problem is not None:
            raise InputError(f"max_tokens: {problem}", key="max_tokens", hint="for example 100")
        outcome = await verify.run_one(self.pool, self.launched or self.session(), self.plan,
                                       Verify(prompt=prompt, max_tokens=max_tokens),
                                       on_text=on_text, read_upto=self._read_upto)
        self.history.append(outcome)
        return outcome

    # ------------------------------------------------------------------ step 7, Launch
    # What the Launch step needs beyond launch / log_tail / stop: the plan it shows before the
    # launch renders one, and restarting one process of the running launch.

    def launch_plan(self) -> deploy.DeployPlan | None:
        """The processes the Launch step lists: the running plan; else the one the preview would
        launch; else the last one launched (None when there is neither)."""
        if self.running and self.plan is not None:
            return self.plan
        preview = self.preview
        if preview is None or preview.artifacts is None or preview.blocking:
            return self.plan
        return deploy.plan_for(preview.session, preview.artifacts.deployment,
                               addresses=self.addresses(preview.session))

    async def restart(self, name: str, observer: deploy.LaunchObserver | None = None) -> RestartResult:
        """Stop process `name` of the running launch and start it again with the same spec, then
        wait until it is healthy (deploy.restart: launched.json and the other processes are left
        as they are). The launch result then holds the new process."""
        result = self.launch_result
        if not self.running or result is None or self.plan is None:
            raise PdwError("nothing is running: there is no process to restart",
                           hint="launch the deployment first (the launch step, key l)")
        if name not in result.processes:
            raise PdwError(f"{name} is not a process of this launch",
                           hint=f"one of {', '.join(result.processes)}")
        pool = await self._pool()
        states = {n: p.state for n, p in result.processes.items()}
        outcome = await restart_process(pool, self.plan, name, launch_id=result.launch_id, observer=observer,
                                        states=states, poll_interval=0.2, liveness_interval=1.0)
        result.processes[name] = outcome.process
        return outcome

    # ------------------------------------------------------------------ Test step (prompt pane)

    def max_tokens_problem(self, text: str) -> str | None:
        """Why `text` is not a usable max_tokens (None when it is): a whole number from 1 up,
        below the model's max_model_len (the prompt needs room too)."""
        try:
            value = int(text.strip())
        except ValueError:
            return "a whole number of tokens, e.g. 100"
        if value < 1:
            return "at least 1"
        try:
            limit = self.session().model.max_model_len
        except SessionError:
            return None
        if value >= limit:
            return f"below the model's max_model_len ({limit}), e.g. 100"
        return None


def _usable_ipv4(address: str) -> bool:
    """An IPv4 address a node ip can be (nodes step): not loopback, not link-local."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_link_local)


def _without_none(value: Any) -> Any:
    """TOML has no null: unset keys are left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value


def _report(data: dict[str, Any]) -> Report:
    return Report(session=str(data.get("name") or "pd-session"),
                  started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

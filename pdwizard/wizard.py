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
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pdwizard import artifacts, deploy, verify
from pdwizard.errors import InputError, PdwError, RemoteError
from pdwizard.flow import CheckFlow, connect_nodes, discover_nodes
from pdwizard.models import Node, Session, SshDefaults, Verify
from pdwizard.progress import Progress
from pdwizard.remote.pool import CommandResult, RemotePool
from pdwizard.remote.target import SshTarget
from pdwizard.report import CheckResult, NodeFacts, Report, Status, StepReport
from pdwizard.scripts import script_texts
from pdwizard.session import SessionError, find_secret_keys, save_session, session_to_toml, validate_session

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

    @staticmethod
    def node_problems(node: dict[str, Any]) -> list[InputError]:
        """What is wrong with one node entry on its own (its keys read `nodes[0].<key>`)."""
        shell = {"schema_version": 1, "name": "node-check", "nodes": [node], "instances": [],
                 "model": dict(_PLACEHOLDER_MODEL)}
        try:
            validate_session(shell)
        except SessionError as exc:
            return [p for p in exc.problems if (p.key or "").startswith("nodes[0]")]
        return []

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
        targets = []
        for node in nodes:
            args = shell.ssh_target_args(node)
            jump = SshTarget.parse_jump(args["jump"], args) if args.get("jump") else None
            target = SshTarget(name=node.name, host=node.host, port=args["port"], user=args["user"],
                               identity_file=args["identity_file"], known_hosts=args["known_hosts"],
                               trust_on_first_use=args["trust_on_first_use"], jump=jump,
                               connect_timeout=args["connect_timeout"])
            targets.append(self._sim_target(target))
        return targets

    def _sim_target(self, target: SshTarget) -> SshTarget:
        if self.cluster is None or self.cluster.port_of(target.host, target.port) is None:
            return target
        return SshTarget(name=target.name, host=target.host, port=self.cluster.port_of(target.host, target.port),
                         user=target.user, identity_file=str(self.cluster.client_key_path),
                         known_hosts=str(self.cluster.known_hosts_path), connect_timeout=target.connect_timeout)

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

    # ------------------------------------------------------------------ checks and preview

    async def run_checks(self, progress: Progress | None = None,
                         on_results: Callable[[str, list[CheckResult]], None] | None = None,
                         rerun: Sequence[CheckResult] | None = None) -> StepReport:
        """Node checks and the fabric checks with the ping matrix (`rerun`: only those results).
        `on_results(node, results)` hears each node's results as soon as it answers."""
        session = self.checks_session()
        flow = self._flow(session, progress)
        flow.on_results = on_results
        node_step = flow.check_nodes() if rerun is None else None
        if node_step is not None and on_results is not None:
            for name in flow.facts:
                on_results(name, [r for r in node_step.results if r.node == name])
        step = await flow.fabric(rerun=rerun)
        if rerun is None or self.fabric_step is None:
            self.fabric_step = step
            self.node_step = node_step
        else:
            self.fabric_step = _merged(self.fabric_step, step)
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
        self._read_upto = {}
        return self.launch_result

    def log_tail(self, on_line: Callable[[deploy.LogLine], None] | None = None,
                 max_lines: int = 2000) -> deploy.LogTail:
        """A live tail of every launched process's log (start it, then close it)."""
        assert self.pool is not None and self.plan is not None, "launch first"
        return deploy.LogTail(self.pool, self.plan.session, deploy.LogSource.of(self.plan.processes),
                              runtime=self.plan.runtime, max_lines=max_lines, on_line=on_line)

    async def stop(self) -> deploy.StopReport:
        """Stop every process of the session on every node, and forget the launch."""
        pool = await self._pool()
        report = await deploy.stop_session(pool, self.session())
        self.running = not report.ok
        return report

    async def send_prompt(self, prompt: str, *, max_tokens: int = 100,
                          on_text: Callable[[str], None] | None = None) -> verify.VerifyOutcome:
        """One prompt through the proxy, streamed; judged like a [[verify]] (served by, recompute)."""
        assert self.pool is not None and self.plan is not None, "launch first"
        outcome = await verify.run_one(self.pool, self.session(), self.plan,
                                       Verify(prompt=prompt, max_tokens=max_tokens),
                                       on_text=on_text, read_upto=self._read_upto)
        self.history.append(outcome)
        return outcome


def _report(data: dict[str, Any]) -> Report:
    return Report(session=str(data.get("name") or "pd-session"),
                  started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))


def _merged(old: StepReport, new: StepReport) -> StepReport:
    """The last full run with the re-run's verdicts in place of the ones they repeat."""
    key = lambda r: (r.check, r.node, r.device, r.target)  # noqa: E731
    fresh = {key(r): r for r in new.results}
    merged = StepReport(name=old.name, note=old.note)
    for r in old.results:
        merged.add(fresh.pop(key(r), r))
    for r in fresh.values():
        merged.add(r)
    merged.finish(old.duration_s)
    return merged

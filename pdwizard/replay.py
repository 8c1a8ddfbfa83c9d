"""The headless flow: `pdwizard --replay SESSION` (optionally against a simulator).

Loads the session, starts the simulated cluster when asked (and always stops it), connects,
discovers, checks, renders; past `--dry-run` uploads the ranktable, launches every instance and
the proxy, runs each `[[verify]]` through the proxy and stops the deployment again (unless
`--keep-running`). Prints the summary and writes `report.json`. `--stop` and `--status` only
connect and stop / show what the session's run directories name.

Returns the exit code: 0 every step passed, 1 a check, the launch, a verification or the stop
failed, 2 invalid input.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pdwizard import artifacts, deploy, verify
from pdwizard.deploy.health import port_answers
from pdwizard.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputError
from pdwizard.flow import CheckFlow
from pdwizard.models import Node, Session
from pdwizard.progress import Progress, summary
from pdwizard.remote.pool import RemotePool
from pdwizard.remote.target import SshTarget
from pdwizard.render import render_problems
from pdwizard.report import CheckResult, Report, Status, StepReport, worst
from pdwizard.session import SessionError, load_session

#: Seconds between two HTTP health rounds of the launch (one GET per starting process from this
#: machine): the launch sees an instance ready at most this long after it is.
LAUNCH_POLL_S = 0.1
#: Seconds between two liveness round trips (one SSH command per node): how soon a process that
#: exits during start-up is reported.
LAUNCH_LIVENESS_S = 1.0

Action = Literal["run", "stop", "status"]


@dataclass
class ReplayOptions:
    """What the command line asked for."""

    session_path: Path
    sim_spec: Path | None = None
    dry_run: bool = False
    out_dir: Path | None = None
    verbose: bool = False
    keep_running: bool = False
    action: Action = "run"
    poll_interval: float = LAUNCH_POLL_S


def targets_for(session: Session, cluster=None) -> list[SshTarget]:
    """SSH targets for every session node; with a simulator, its key and known_hosts."""
    targets = []
    for node in session.nodes:
        target = node_target(session, node)
        if cluster is not None:
            simulated = sim_target(target, cluster)
            if simulated is None:
                raise InputError(
                    f"no simulated node at {target.host}:{target.port}",
                    key=f"nodes.{target.name}.host",
                    hint="every session node must match a [[node]] of the sim spec by host and port "
                         f"(the spec has: {', '.join(cluster.addresses())})",
                )
            target = simulated
        targets.append(target)
    return targets


def node_target(session: Session, node: Node) -> SshTarget:
    """How to reach `node`: the [ssh] defaults merged with the node's own settings. (The wizard
    calls it with a session that holds only [ssh] and the nodes.)"""
    args = session.ssh_target_args(node)
    jump = SshTarget.parse_jump(args["jump"], args) if args.get("jump") else None
    return SshTarget(name=node.name, host=node.host, port=args["port"], user=args["user"],
                     identity_file=args["identity_file"], known_hosts=args["known_hosts"],
                     trust_on_first_use=args["trust_on_first_use"], jump=jump,
                     connect_timeout=args["connect_timeout"])


def sim_target(target: SshTarget, cluster) -> SshTarget | None:
    """`target` pointed at the simulated node with the same host and port (its actual port, the
    simulator's key and known_hosts); None when the simulator has no such node."""
    port = cluster.port_of(target.host, target.port)
    if port is None:
        return None
    return SshTarget(name=target.name, host=target.host, port=port, user=target.user,
                     identity_file=str(cluster.client_key_path),
                     known_hosts=str(cluster.known_hosts_path), connect_timeout=target.connect_timeout)


@contextlib.asynccontextmanager
async def maybe_sim(spec_path: Path | None) -> AsyncIterator[object | None]:
    """Start the simulated cluster for the run and stop it whatever happens."""
    if spec_path is None:
        yield None
        return
    from pdwizard.sim import SimCluster, load_spec

    async with SimCluster(load_spec(spec_path)) as cluster:
        yield cluster


async def run_replay(opts: ReplayOptions, progress: Progress) -> int:
    """The whole headless run; the exit code is the return value."""
    source = str(opts.session_path)
    session = load_session(opts.session_path)
    if opts.action == "run":  # stop and status need the nodes and the name only
        problems = render_problems(session, source=source)
        if problems:
            raise SessionError(problems)
    started = time.monotonic()
    report = Report(session=session.name, simulated=opts.sim_spec is not None,
                    started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    async with maybe_sim(opts.sim_spec) as cluster:
        targets = targets_for(session, cluster)
        addresses = deploy.sim_addresses(session) if cluster is not None else None
        async with RemotePool(targets, on_command=progress.command) as pool:
            if cluster is not None:
                progress.say(f"SIMULATED cluster from {opts.sim_spec}: no real NPU is touched")
            progress.begin([t.name for t in targets])
            try:
                flow = CheckFlow(session, pool, report, progress)
                if opts.action == "stop":
                    code = await _stop_only(flow, addresses)
                elif opts.action == "status":
                    code = await _status_only(flow, addresses)
                else:
                    code = await _checks(flow, source)
                    if code != EXIT_INPUT:
                        code = max(code, await _produce(flow, opts, source, addresses,
                                                        sim_cluster=cluster is not None))
            finally:
                progress.end()
    report.duration_s = round(time.monotonic() - started, 3)
    report.exit_code = code
    report.status = Status.FAIL if code else worst([s.status for s in report.steps])
    if opts.out_dir is not None:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        report.write(opts.out_dir / "report.json")
    summary(report, getattr(progress, "stream", None))
    return code


async def _checks(flow: CheckFlow, source: str) -> int:
    """Connect, discover, check; exit 2 for devices the nodes lack or a session the nodes'
    model refuses (preflight), 1 for any failure."""
    await flow.connect()
    await flow.discover()
    errors = flow.input_errors(source)
    if not errors:
        flow.check_nodes()
        errors = flow.preflight(source)
    if errors:
        for err in errors:
            flow.progress.say(f"error: {err}")
        return EXIT_INPUT
    await flow.fabric()
    failed = any(s.status is Status.FAIL for s in flow.report.steps)
    return EXIT_FAILED if failed else EXIT_OK




async def _produce(flow: CheckFlow, opts: ReplayOptions, source: str, addresses: Mapping[str, str] | None,
                   sim_cluster: bool = False) -> int:
    """Render the commands and the ranktable, write them under --out; past --dry-run (and only when
    every check passed) upload the ranktable, launch, verify and stop."""
    session, progress = flow.session, flow.progress
    simulated = {n: f.sim_host for n, f in flow.facts.items() if f.sim_host}
    if simulated and addresses is None:
        # SIMULATED nodes reached without --sim (`python -m pdwizard.sim` in the foreground): their
        # servers listen on each node's loopback address, the session's node IPs exist on paper only
        addresses = simulated
        flow.report.simulated = True
        progress.say(f"SIMULATED nodes ({', '.join(simulated)}): no real NPU is touched")
    missing = artifacts.undiscovered(session, flow.facts)
    if missing:
        progress.say(f"render: skipped, {', '.join(missing)} not discovered")
        return EXIT_OK
    step = flow.report.step("render")
    try:
        art = artifacts.build(session, flow.facts, source)
        if opts.out_dir is not None:
            artifacts.write(art, session, opts.out_dir)
    except InputError as exc:
        # With checks already failed, a missing fact (an NPU without IP) is the cause,
        # already reported: not an input error.
        failed = bool(flow.report.failures())
        progress.say(f"{'render: skipped' if failed else 'error'}: {exc}")
        step.add(CheckResult(check="render", node="-", status=Status.SKIP if failed else Status.FAIL,
                             message=exc.message, hint=exc.hint))
        step.finish(0.0)
        return EXIT_OK if failed else EXIT_INPUT
    artifacts.notes_step(step, art)
    step.finish(0.0)
    for path in art.written:
        progress.say(f"wrote {path}")
    if opts.dry_run or step.status is Status.FAIL or flow.report.failures():
        if not opts.dry_run:
            progress.say("launch: skipped, a check failed")
        return EXIT_OK
    plan = deploy.plan_for(session, art.deployment, addresses=addresses)
    ranktable = art.ranktable
    if plan.runtime.container is None:
        # On the host: the checked upload (backup when it differs, sha256 read back) as its own step.
        # In a container the launch uploads it there, where the ~/ of the path is resolved.
        upload = flow.report.step("ranktable")
        await artifacts.upload(flow.pool, session, art, upload)
        upload.finish(0.0)
        if upload.status is Status.FAIL:
            return EXIT_FAILED
        ranktable = None
    return await _deploy(flow, opts, plan, ranktable, sim_cluster)


# ------------------------------------------------------------------ launch, verify, stop


class _Observer(deploy.LaunchObserver):
    """The launch through the Progress interface: events, the readiness line when it changes,
    each failure with its diagnoses and last log lines."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.last: str | None = None

    def readiness(self, line: str, elapsed_s: float) -> None:
        if line != self.last:
            self.last = line
            self.progress.say(f"readiness: {line}  ({elapsed_s:.1f} s)")

    def event(self, text: str) -> None:
        self.progress.say(f"launch: {text}")

    def failure(self, failure: deploy.Failure) -> None:
        for line in failure.lines():
            self.progress.say(f"launch: FAILED {line}" if not line.startswith(" ") else line)


async def _deploy(flow: CheckFlow, opts: ReplayOptions, plan: deploy.DeployPlan, ranktable: str | None,
                  simulated: bool) -> int:
    progress, report = flow.progress, flow.report
    step = report.step("launch")
    result = await deploy.launch(flow.pool, plan, observer=_Observer(progress), ranktable=ranktable,
                                 poll_interval=opts.poll_interval, liveness_interval=LAUNCH_LIVENESS_S)
    launch_step(step, result)
    if not result.ok:
        return EXIT_FAILED
    try:
        code = await _verify(flow, plan)
    except BaseException:
        if not opts.keep_running:  # interrupted while verifying: leave nothing behind
            progress.say("interrupted: stopping the deployment")
            await asyncio.shield(_stop(flow, plan, report.step("stop")))
        raise
    if opts.keep_running:
        stop = report.step("stop")
        if simulated:
            why = ("--keep-running with a SIMULATED cluster: the deployment dies with the simulator, "
                   "which stops as pdwizard exits")
        else:
            why = (f"left running (--keep-running): the proxy answers at {verify.proxy_url(plan)}; "
                   f"stop it with pdwizard --replay {opts.session_path} --stop")
        progress.say(why)
        stop.add(CheckResult(check="stop", node="-", status=Status.SKIP, message=why))
        stop.finish(0.0)
        return code
    return max(code, await _stop(flow, plan, report.step("stop")))


def launch_step(step: StepReport, result: deploy.LaunchResult) -> None:
    """The "launch" step: one verdict per process (and per node-level failure), its diagnoses
    and last log lines as raw output."""
    by_process = {f.process: f for f in result.failures if f.process}
    for f in result.failures:
        if f.process is None:
            step.add(CheckResult(check="launch", node=f.node, status=Status.FAIL, message=f.reason,
                                 hint=f.hint, raw="\n".join(f.log_tail) or None))
    for name, proc in result.processes.items():
        spec = proc.spec
        f = by_process.get(name)
        if f is not None:
            step.add(CheckResult(
                check="launch", node=spec.node, target=name, status=Status.FAIL,
                value=", ".join(d.id for d in f.diagnoses) or None,
                message=f"{spec.label}: {f.reason}" + "".join(f"; {d.id}: {d.meaning}" for d in f.diagnoses),
                hint="; ".join(d.fix for d in f.diagnoses) or f.hint,
                raw="\n".join(f.log_tail) or None,
                data={"pid": proc.pid, "exit_status": f.exit_status, "diagnoses": [d.id for d in f.diagnoses]}))
        elif proc.state == "healthy":
            step.add(CheckResult(check="launch", node=spec.node, target=name, status=Status.OK,
                                 value=f"healthy after {proc.healthy_after_s:.1f} s",
                                 message=f"{spec.label} pid {proc.pid}",
                                 data={"pid": proc.pid, "healthy_after_s": proc.healthy_after_s}))
        else:
            what = "not started" if proc.pid is None else "stopped by the cleanup before it was healthy"
            step.add(CheckResult(check="launch", node=spec.node, target=name, status=Status.SKIP,
                                 message=f"{spec.label}: {what}", data={"pid": proc.pid}))
    if result.cleanup is not None and not result.cleanup.ok:
        step.add(CheckResult(check="cleanup", node="-", status=Status.FAIL,
                             message="the cleanup after the failed launch left processes running",
                             raw="\n".join(result.cleanup.lines()),
                             hint="pdwizard --replay SESSION --stop, or stop them by hand (pids above)"))
    step.note = result.readiness
    step.finish(result.duration_s)


async def _verify(flow: CheckFlow, plan: deploy.DeployPlan) -> int:
    session, progress = flow.session, flow.progress
    step = flow.report.step("verify")
    t0 = time.monotonic()
    verifies = verify.verifies_of(session)
    if not session.verify:
        progress.say(f"verify: the session has no [[verify]]: sending the guide's {verify.DEFAULT_VERIFY.prompt!r}")

    def seen(o: verify.VerifyOutcome) -> None:
        progress.say(o.line())
        for note in o.notes:
            progress.say(f"  note: {note}")
        step.add(verify_result(o))

    try:
        outcomes = await verify.run_all(flow.pool, session, plan, verifies, on_outcome=seen)
    finally:
        step.finish(time.monotonic() - t0)
    ok = sum(1 for o in outcomes if o.ok)
    step.note = f"{ok}/{len(outcomes)} answered as expected"
    return EXIT_OK if ok == len(outcomes) else EXIT_FAILED


def verify_result(o: verify.VerifyOutcome) -> CheckResult:
    node = o.decode.node if o.decode is not None else "-"
    return CheckResult(
        check="verify", node=node, target=repr(verify.excerpt(o.verify.prompt, 60)),
        status=Status.OK if o.ok else Status.FAIL,
        value=verify.excerpt(o.result.text) if o.result.text else None,
        # the prompt is the verdict's target, shown with its node; without a node, say it here
        message=((f"prompt {o.verify.prompt!r}: " if node == "-" else "") + "; ".join(o.problems)) if o.problems
        else f"served by {o.served_by}",
        hint=verify.RECOMPUTE_HINT if o.recompute else (
            "see the decode and proxy logs in the run directory (~/.pdwizard/runs/<session>/)" if o.problems else None),
        raw=o.recompute, data=o.data())


async def _stop(flow: CheckFlow, plan: deploy.DeployPlan | None, step: StepReport,
                addresses: Mapping[str, str] | None = None) -> int:
    """Stop everything the session's run directories name, then prove it: no marked process
    left (the stop script's own check) and no port of the deployment answering."""
    session, progress = flow.session, flow.progress
    t0 = time.monotonic()
    nodes = [n for n in deploy.session_nodes(session) if n in flow.reachable]
    unreachable = [n for n in deploy.session_nodes(session) if n not in nodes]
    grace = float(session.stack.stop_grace_s)
    stopped = await deploy.stop(flow.pool, nodes, session.name, runtime=deploy.runtime_for(session), grace_s=grace)
    for line in stopped.lines():
        progress.say(f"stop: {line}")
    for node in unreachable:
        step.add(CheckResult(check="stop", node=node, status=Status.FAIL,
                             message="not reachable: whatever runs there was not stopped",
                             hint="fix the connection and run pdwizard --replay SESSION --stop again"))
    for node, n in stopped.nodes.items():
        if n.error:
            step.add(CheckResult(check="stop", node=node, status=Status.FAIL, message=n.error,
                                 hint="run pdwizard --replay SESSION --stop again, or stop them by hand"))
        for p in n.processes:
            left = p.outcome == "left"
            step.add(CheckResult(
                check="stop", node=node, target=p.name, status=Status.FAIL if left else Status.OK,
                value=p.outcome, message=f"still alive after SIGKILL: {' '.join(map(str, p.left))}" if left else
                f"pgid {p.pgid if p.pgid is not None else '-'} {p.outcome}",
                hint="processes in uninterruptible sleep (the NPU driver): check them with ps on the node"
                if left else None))
    # by port: what the plan (or the records the launches left) says should answer, must not
    ports = _ports(plan) if plan is not None else await _recorded_ports(flow, nodes, addresses)
    answering = await asyncio.gather(*(port_answers(h, p) for _, _, h, p in ports))
    for (node, name, host, port), busy in zip(ports, answering):
        if busy:
            step.add(CheckResult(check="stop", node=node, target=name, status=Status.FAIL,
                                 message=f"port {port} on {host} still answers after the stop",
                                 hint="something outside this session's processes holds it: ss -ltnp on the node"))
    if stopped.nothing_to_do and not any(answering):
        progress.say("stop: nothing was running")
    step.note = f"{sum(len(n.processes) for n in stopped.nodes.values())} process(es), " \
                f"{len(ports)} port(s) checked"
    step.finish(time.monotonic() - t0)
    return EXIT_FAILED if step.status is Status.FAIL else EXIT_OK


def _ports(plan: deploy.DeployPlan) -> list[tuple[str, str, str, int]]:
    return [(p.node, p.name, p.health_host, p.port) for p in plan.processes]


async def _recorded_ports(flow: CheckFlow, nodes: list[str],
                          addresses: Mapping[str, str] | None) -> list[tuple[str, str, str, int]]:
    """The ports of what the last launch recorded (launched.json) on the nodes."""
    session = flow.session
    state = await deploy.status(flow.pool, nodes, session.name, runtime=deploy.runtime_for(session),
                                hosts={n: deploy.health_host(session, n, addresses) for n in nodes},
                                timeout=float(session.ssh.command_timeout))
    seen: dict[tuple[str, int], tuple[str, str, str, int]] = {}
    for p in state.processes:
        if p.node in nodes and p.health_host and p.port:
            seen.setdefault((p.health_host, p.port), (p.node, p.name, p.health_host, p.port))
    return list(seen.values())


async def _stop_only(flow: CheckFlow, addresses: Mapping[str, str] | None) -> int:
    """`--stop`: connect, then stop whatever the session's run directories name."""
    await flow.connect()
    return await _stop(flow, None, flow.report.step("stop"), addresses)


async def _status_only(flow: CheckFlow, addresses: Mapping[str, str] | None) -> int:
    """`--status`: connect, then show what runs for the session on every node."""
    await flow.connect()
    step = flow.report.step("status")
    t0 = time.monotonic()
    nodes = flow.reachable
    state = await deploy.status(flow.pool, nodes, flow.session.name, runtime=deploy.runtime_for(flow.session),
                                hosts={n: deploy.health_host(flow.session, n, addresses) for n in nodes},
                                timeout=float(flow.session.ssh.command_timeout))
    for line in state.lines():
        flow.progress.say(f"status: {line}")
    for node, err in state.errors.items():
        step.add(CheckResult(check="status", node=node, status=Status.FAIL, message=f"status unknown: {err}"))
    for p in state.processes:
        if p.state == "running":
            status = Status.OK if p.answering else Status.WARN
            message = f"{p.label} pid {p.pid}, " + ("answering" if p.answering else "not answering")
        elif p.state == "exited":
            status, message = Status.WARN, f"{p.label} exited with status {p.exit_status}"
        elif p.state == "gone":
            status, message = Status.WARN, f"{p.label} died without an exit status (killed?)"
        else:
            status, message = Status.SKIP, f"{p.label} not running"
        step.add(CheckResult(check="status", node=p.node, target=p.name, status=status, value=p.state,
                             message=message, data={"pid": p.pid, "port": p.port, "answering": p.answering}))
    running = len(state.running)
    step.note = f"{running} process(es) running" if running else "nothing running"
    flow.progress.say(f"status: {step.note}")
    step.finish(time.monotonic() - t0)
    failed = bool(state.errors) or any(r.check == "ssh" for r in flow.report.failures())
    return EXIT_FAILED if failed else EXIT_OK

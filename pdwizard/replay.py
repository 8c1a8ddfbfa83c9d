"""The headless flow: `pdwizard --replay SESSION` (optionally against a simulator).

Loads the session, starts the simulated cluster when asked (and always stops it),
connects, discovers, checks, prints the summary and writes `report.json`. Returns
the exit code: 0 every step passed, 1 a check failed, 2 invalid input.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from pdwizard import artifacts
from pdwizard.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputError
from pdwizard.flow import CheckFlow
from pdwizard.models import Session
from pdwizard.progress import Progress, summary
from pdwizard.remote.pool import RemotePool
from pdwizard.remote.target import SshTarget
from pdwizard.render import render_problems
from pdwizard.report import CheckResult, Report, Status, worst
from pdwizard.session import SessionError, load_session


@dataclass
class ReplayOptions:
    """What the command line asked for."""

    session_path: Path
    sim_spec: Path | None = None
    dry_run: bool = False
    out_dir: Path | None = None
    verbose: bool = False


def targets_for(session: Session, cluster=None) -> list[SshTarget]:
    """SSH targets for every session node; with a simulator, its key and known_hosts."""
    targets = []
    for node in session.nodes:
        args = session.ssh_target_args(node.name)
        jump = SshTarget.parse_jump(args["jump"], args) if args.get("jump") else None
        target = SshTarget(name=node.name, host=node.host, port=args["port"], user=args["user"],
                           identity_file=args["identity_file"], known_hosts=args["known_hosts"],
                           trust_on_first_use=args["trust_on_first_use"], jump=jump,
                           connect_timeout=args["connect_timeout"])
        targets.append(_sim_target(target, cluster) if cluster is not None else target)
    return targets


def _sim_target(target: SshTarget, cluster) -> SshTarget:
    """Point a target at the simulated node with the same host and port."""
    port = cluster.port_of(target.host, target.port)
    if port is None:
        raise InputError(
            f"no simulated node at {target.host}:{target.port}",
            key=f"nodes.{target.name}.host",
            hint="every session node must match a [[node]] of the sim spec by host and port "
                 f"(the spec has: {', '.join(cluster.addresses())})",
        )
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
    problems = render_problems(session, source=source)
    if problems:
        raise SessionError(problems)
    started = time.monotonic()
    report = Report(session=session.name, simulated=opts.sim_spec is not None,
                    started_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
    async with maybe_sim(opts.sim_spec) as cluster:
        targets = targets_for(session, cluster)
        async with RemotePool(targets, on_command=progress.command) as pool:
            if cluster is not None:
                progress.say(f"SIMULATED cluster from {opts.sim_spec}: no real NPU is touched")
            progress.begin([t.name for t in targets])
            try:
                flow = CheckFlow(session, pool, report, progress)
                code = await _checks(flow, source)
                if code != EXIT_INPUT:
                    code = max(code, await _produce(flow, opts, source))
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


async def _produce(flow: CheckFlow, opts: ReplayOptions, source: str) -> int:
    """Render the commands and the ranktable, write them under --out, upload to launch."""
    session, progress = flow.session, flow.progress
    missing = artifacts.undiscovered(session, flow.facts)
    if missing:
        progress.say(f"render: skipped, {', '.join(missing)} not discovered")
        return EXIT_OK
    step = flow.report.step("render")
    try:
        art = artifacts.build(session, flow.facts, source)
        if opts.out_dir is not None:
            artifacts.write(art, session, flow.facts, opts.out_dir, source)
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
        return EXIT_OK
    upload = flow.report.step("ranktable")
    await artifacts.upload(flow.pool, session, art, upload)
    upload.finish(0.0)
    progress.say("launch: not part of this version yet; the ranktable is in place, nothing was started")
    return EXIT_FAILED if upload.status is Status.FAIL else EXIT_OK

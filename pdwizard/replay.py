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

from pdwizard.errors import EXIT_FAILED, EXIT_INPUT, EXIT_OK, InputError
from pdwizard.flow import CheckFlow
from pdwizard.models import Session
from pdwizard.progress import Progress, summary
from pdwizard.remote.pool import RemotePool
from pdwizard.remote.target import SshTarget
from pdwizard.report import Report, Status, worst
from pdwizard.session import load_session


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
    session = load_session(opts.session_path)
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
                code = await _flow(session, pool, report, progress, str(opts.session_path))
            finally:
                progress.end()
    if not opts.dry_run and code == EXIT_OK:
        progress.say("launch: not part of this version yet; nothing was started (use --dry-run)")
    report.duration_s = round(time.monotonic() - started, 3)
    report.exit_code = code
    report.status = Status.FAIL if code else report.status
    if opts.out_dir is not None:
        opts.out_dir.mkdir(parents=True, exist_ok=True)
        report.write(opts.out_dir / "report.json")
    summary(report, getattr(progress, "stream", None))
    return code


async def _flow(session: Session, pool: RemotePool, report: Report, progress: Progress,
                source: str) -> int:
    flow = CheckFlow(session, pool, report, progress)
    await flow.connect()
    await flow.discover()
    errors = flow.input_errors(source)
    if errors:
        for err in errors:
            progress.say(f"error: {err}")
        report.status = Status.FAIL
        return EXIT_INPUT
    flow.check_nodes()
    await flow.fabric()
    report.status = worst([s.status for s in report.steps])
    return EXIT_FAILED if report.status is Status.FAIL else EXIT_OK

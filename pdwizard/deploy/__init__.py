"""Deployment orchestration: launch, health, logs, stop, status. No Textual here.

The replay and the TUI drive the same calls:

    plan = plan_for(session, artifacts.deployment, addresses=None)      # or sim_addresses(session)
    result = await launch(pool, plan, observer=..., ranktable=artifacts.ranktable)
    async with LogTail(pool, session.name, LogSource.of(plan.processes), runtime=plan.runtime) as tail:
        async for line in tail: print(line.prefixed)
    got = await read_log(pool, session.name, node, name, since=n)     # one-shot: lines after line n
    report = await stop_session(pool, session)                          # from any later run
    state = await status_session(pool, session)

Run directory on each node (`~/.pdwizard/runs/<session name>/`, inside the container when
`[stack] container` is set):

    ranktable.json          the uploaded ranktable (when the connector needs one)
    launched.json           what the last launch runs, on every node: processes, roles, ports,
                            health addresses and paths, argv, launch id, runtime
    <node>-<role>-<n>.sh    the launcher (pdwizard.scripts text: exports + exec of the argv)
    <node>-<role>-<n>.log   stdout+stderr, appended; each launch starts with a
                            `=== pdwizard launch <name> <time> session <session> ===` line
    <node>-<role>-<n>.pid   pid of the process's session leader = its process group id
    <node>-<role>-<n>.exit  its exit status, once it exited
    proxy.py                the builtin proxy's copy (role proxy: `<node>-proxy-0.*`)
"""

from __future__ import annotations

from collections.abc import Mapping

from pdwizard.deploy.diagnose import Diagnosis, diagnose, load_rules
from pdwizard.deploy.health import Readiness, http_ok
from pdwizard.deploy.launch import Failure, LaunchedProcess, LaunchObserver, LaunchResult, launch
from pdwizard.deploy.logs import LogLine, LogRead, LogSource, LogTail, read_log
from pdwizard.deploy.plan import DeployPlan, ProcessSpec, health_host, plan_for, run_dir
from pdwizard.deploy.runtime import Runtime, runtime_for
from pdwizard.deploy.stop import ProcessStatus, StatusReport, StopReport, status, stop
from pdwizard.models import Session
from pdwizard.remote.pool import RemotePool


def session_nodes(session: Session) -> list[str]:
    """Every node of the session: where stop and status look (a later run may have moved
    instances; the run directory of every node is checked)."""
    return [n.name for n in session.nodes]


def sim_addresses(session: Session) -> dict[str, str]:
    """node -> SSH host: what the simulator's nodes listen on (pass as `addresses`)."""
    return {n.name: n.host for n in session.nodes}


async def stop_session(pool: RemotePool, session: Session, *, grace_s: float | None = None) -> StopReport:
    """Stop everything the session's run directories name, on every session node."""
    grace = grace_s if grace_s is not None else float(getattr(session.stack, "stop_grace_s", 30.0))
    return await stop(pool, session_nodes(session), session.name, runtime=runtime_for(session), grace_s=grace)


async def status_session(pool: RemotePool, session: Session, *,
                         addresses: Mapping[str, str] | None = None) -> StatusReport:
    """What runs for the session on every node, and whether each port answers."""
    hosts = {n: health_host(session, n, addresses) for n in session_nodes(session)}
    return await status(pool, session_nodes(session), session.name, runtime=runtime_for(session), hosts=hosts,
                        timeout=float(session.ssh.command_timeout))


__all__ = [
    "DeployPlan",
    "Diagnosis",
    "Failure",
    "LaunchObserver",
    "LaunchResult",
    "LaunchedProcess",
    "LogLine",
    "LogRead",
    "LogSource",
    "LogTail",
    "ProcessSpec",
    "ProcessStatus",
    "Readiness",
    "Runtime",
    "StatusReport",
    "StopReport",
    "diagnose",
    "health_host",
    "http_ok",
    "launch",
    "load_rules",
    "plan_for",
    "read_log",
    "run_dir",
    "runtime_for",
    "session_nodes",
    "sim_addresses",
    "status",
    "status_session",
    "stop",
    "stop_session",
]

"""Stop what a launch left running, and say what runs: from the run directory alone.

Both work from pid files and nothing in memory, so they work after a partial or failed
launch and from a later run (`pdwizard --replay FILE --stop` / `--status`).

Stop, one round trip per node (all of the node's processes at once):

1. every `<name>.pid` in the run dir names a process group (pid = pgid: each process leads
   its own session). A group is only signalled when one of its live members carries the
   marker in its environment (`PDWIZARD_SESSION=<$HOME>/.pdwizard/runs/<session>`, or `PDWIZARD_LAUNCH=<id>`
   when cleaning up one launch): a pid reused by an unrelated process is never touched. When
   `names` restricts the stop, only marked processes that also carry one of those names
   (`PDWIZARD_PROCESS=<name>`) count: restarting one process never touches its siblings of
   the same launch on that node;
2. SIGTERM to each group and to every marked process (children that left the group);
3. wait up to the grace period, polling /proc; SIGKILL what is left; wait for it to go;
4. verify nothing live (zombies do not count) is left in the groups or carries the marker;
   remove the pid and exit files of what is gone (a launch's cleanup: only of the groups it
   owned, so a failed launch's exit statuses stay for `--status`). Logs stay.

A launch script in flight on the node holds `.launching/` (with its pid): stop waits for it
first, so a launch interrupted mid-way cannot start a process after the stop looked.

No pid files and no marked process: nothing to do, a clean result. Running it twice is safe.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from pdwizard.errors import RemoteError
from pdwizard.deploy.health import http_ok
from pdwizard.deploy.plan import run_dir
from pdwizard.deploy.runtime import Runtime
from pdwizard.deploy.shell import PRELUDE, PROCESS_ENV, SESSION_ENV, home_path, quote
from pdwizard.probe import new_nonce, split_output
from pdwizard.remote.pool import RemotePool

LAUNCH_ENV = "PDWIZARD_LAUNCH"
RECORD_FILE = "launched.json"
LOCK_DIR = ".launching"  # held (mkdir) by a launch script while it runs; holds its pid
LOCK_WAIT_S = 30.0  # how long stop waits for a launch script in flight to finish starting things
KILL_WAIT_S = 5.0  # after SIGKILL: processes in uninterruptible sleep (NPU driver) take a moment
_QUICK_NAPS = 5  # after a signal, the first checks come 0.02 s apart


def session_marker_expr(session: str) -> str:
    """The session marker as shell text: `PDWIZARD_SESSION=<$HOME>/.pdwizard/runs/<session>`,
    expanded on the node. The run directory's path identifies the launches of one session by
    one user on one node (or in one container), even when several share a kernel."""
    return f"{SESSION_ENV}={home_path(run_dir(session))}"


def launch_marker(launch_id: str) -> str:
    return f"{LAUNCH_ENV}={launch_id}"


@dataclass(frozen=True)
class StoppedProcess:
    """One pid file's fate. outcome: not_running (already gone) | terminated (SIGTERM was
    enough) | killed (needed SIGKILL) | left (still alive after SIGKILL) | stale (the pid now
    belongs to an unrelated process: not touched, its pid file removed) | not_ours (a launch's cleanup
    found a live process of another launch under this name: not touched, pid file kept)."""

    name: str
    pgid: int | None
    outcome: str
    left: tuple[int, ...] = ()


@dataclass
class NodeStop:
    node: str
    processes: list[StoppedProcess] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not any(p.outcome == "left" for p in self.processes)


@dataclass
class StopReport:
    nodes: dict[str, NodeStop]

    @property
    def ok(self) -> bool:
        return all(n.ok for n in self.nodes.values())

    @property
    def nothing_to_do(self) -> bool:
        return self.ok and not any(n.processes for n in self.nodes.values())

    def lines(self) -> list[str]:
        out = []
        for node, n in self.nodes.items():
            if n.error:
                out.append(f"{node}: stop failed: {n.error}")
            elif not n.processes:
                out.append(f"{node}: nothing running")
            for p in n.processes:
                left = f" (still alive: {' '.join(map(str, p.left))})" if p.left else ""
                out.append(f"{node}: {p.name} (pgid {p.pgid if p.pgid is not None else '-'}) {p.outcome}{left}")
        return out


def stop_script(session: str, node: str, *, grace_s: float, nonce: str, launch_id: str | None = None,
                names: Iterable[str] | None = None) -> str:
    """The `sh -s` script that stops one node's processes (see the module docstring).

    Output lines: `@@PDW <nonce> <name> <pgid> <outcome> [<pid>...]`; exit 0 when nothing is left.
    """
    marker = quote(launch_marker(launch_id)) if launch_id else session_marker_expr(session)
    names = None if names is None else list(names)
    wanted = None if names is None else " ".join(names)
    if wanted is not None and any(c.isspace() for c in wanted.replace(" ", "")):
        raise ValueError("process names cannot hold spaces")
    # at most this many naps (the first _QUICK_NAPS of 0.02 s, as most processes exit at once on
    # SIGTERM, the rest of 0.1 s), and never past the wall-clock limit (`date +%s` has whole
    # seconds: one more so it never cuts the grace short): a /proc scan on a busy node takes time too
    extra = _QUICK_NAPS - 1  # the quick naps together last about one 0.1 s nap
    grace_ticks, grace_wall = max(1, int(round(grace_s * 10))) + extra, math.ceil(grace_s) + 1
    kill_ticks, kill_wall = int(KILL_WAIT_S * 10) + extra, math.ceil(KILL_WAIT_S) + 1
    return f"""set -u
set -f
PDW_N={nonce}
{PRELUDE}
mark={marker}
wanted={quote(wanted) if wanted is not None else "''"}
filter={1 if wanted is not None else 0}
named={quote(_named_args(names)) if names is not None else "''"}
d={home_path(run_dir(session))}
cd -- "$d" 2>/dev/null || d=
if [ -n "$d" ]; then
  i=0
  while [ -d {LOCK_DIR} ] && [ $i -lt {int(LOCK_WAIT_S * 10)} ]; do
    {{ read -r o < {LOCK_DIR}/pid; }} 2>/dev/null || o=
    pdw_alive "$o" || break
    pdw_nap; i=$((i + 1))
  done
fi
entries=
if [ -n "$d" ]; then
  set +f
  for f in *.pid; do
    [ -f "$f" ] || continue
    n=${{f%.pid}}
    if [ "$filter" = 1 ]; then case " $wanted " in *" $n "*) ;; *) continue ;; esac; fi
    {{ read -r g < "$f"; }} 2>/dev/null || g=
    case $g in ''|*[!0-9]*) g=0 ;; esac
    entries="$entries $n:$g"
  done
  set -f
fi
pdw_mine() {{
  [ "$filter" = 1 ] || {{ pdw_marked "$mark"; return 0; }}
  pdw_o=
  for pdw_q in $(pdw_marked "$mark"); do
    grep -qzxF $named "/proc/$pdw_q/environ" 2>/dev/null && pdw_o="$pdw_o $pdw_q"
  done
  echo $pdw_o
}}
pdw_owned() {{
  pdw_snap
  owned=
  for p in $(pdw_mine); do
    g=$(pdw_pgrp "$p") && owned="$owned $g"
  done
}}
pdw_classify() {{
  report=
  groups=
  unowned=0
  for e in $entries; do
    n=${{e%:*}}; g=${{e#*:}}
    live=$(pdw_group "$g")
    if [ "$g" = 0 ] || [ -z "$live" ]; then report="$report $n:$g:not_running"; continue; fi
    case " $owned " in
      *" $g "*) groups="$groups $g"; report="$report $n:$g:pending" ;;
      *) unowned=1
         if [ "$filter" = 1 ]; then report="$report $n:$g:not_ours"; else report="$report $n:$g:stale"; fi ;;
    esac
  done
}}
pdw_owned
pdw_classify
# a live group with no marked member: a pid reused by a stranger, or a member caught in the
# instant its environment cannot be read (in the middle of an exec, or of dying): look again
j=0
while [ "$unowned" = 1 ] && [ $j -lt 3 ]; do
  sleep 0.05 2>/dev/null || pdw_nap
  pdw_owned
  pdw_classify
  j=$((j + 1))
done
pdw_left() {{
  pdw_snap
  left=
  for g in $groups; do left="$left $(pdw_group "$g")"; done
  left="$left $(pdw_mine)"
  set -- $left
  left=$*
}}
pdw_signal() {{
  for g in $groups; do kill -"$1" -"$g" 2>/dev/null; done
  for p in $(pdw_mine); do kill -"$1" "$p" 2>/dev/null; done
}}
pdw_wait() {{
  pdw_end_at=$(( $(date +%s) + $2 ))
  i=0
  while :; do
    pdw_left
    [ -z "$left" ] && break
    [ $i -lt "$1" ] && pdw_until "$pdw_end_at" "$2" || break
    if [ $i -lt {_QUICK_NAPS} ]; then sleep 0.02 2>/dev/null || pdw_nap; else pdw_nap; fi
    i=$((i + 1))
  done
}}
pdw_left
hard=
if [ -n "$left" ]; then
  pdw_signal TERM
  pdw_wait {grace_ticks} {grace_wall}
  if [ -n "$left" ]; then
    for g in $groups; do [ -n "$(pdw_group "$g")" ] && hard="$hard $g"; done
    pdw_signal KILL
    pdw_wait {kill_ticks} {kill_wall}
  fi
fi
for e in $report; do
  n=${{e%%:*}}; r=${{e#*:}}; g=${{r%%:*}}; o=${{r#*:}}
  if [ "$o" = pending ]; then
    gl=$(pdw_group "$g")
    if [ -n "$gl" ]; then o=left
    else case " $hard " in *" $g "*) o=killed ;; *) o=terminated ;; esac; fi
  else
    gl=
  fi
  # a launch's cleanup removes only the files of what it owned; a full stop, every stopped one
  rmit=$((1 - filter))
  case " $groups " in *" $g "*) rmit=1 ;; esac
  case $o in left|not_ours) rmit=0 ;; esac
  if [ "$rmit" = 1 ] && [ -n "$d" ]; then rm -f -- "$d/$n.pid" "$d/$n.exit"; fi
  echo "@@PDW $PDW_N $n $g $o $gl"
done
orph=
for p in $left; do
  g=$(pdw_pgrp "$p") || g=
  case " $groups " in *" $g "*) ;; *) orph="$orph $p" ;; esac
done
[ -z "$orph" ] || echo "@@PDW $PDW_N - - left $orph"
[ -z "$left" ]
"""


def _named_args(names: Iterable[str]) -> str:
    """grep arguments matching an environment entry `PDWIZARD_PROCESS=<name>` of any of `names`
    (names are file stems: no spaces, no shell-special characters; none: a pattern nothing has)."""
    words = [f"-e {PROCESS_ENV}={n}" for n in names] or [f"-e {PROCESS_ENV}=/"]
    return " ".join(words)


def parse_stop(node: str, stdout: str, nonce: str) -> NodeStop:
    tag = f"@@PDW {nonce} "
    out = NodeStop(node)
    for line in stdout.splitlines():
        if not line.startswith(tag):
            continue
        words = line[len(tag):].split()
        if len(words) < 3:
            continue
        name, pgid, outcome, *left = words
        pid = int(pgid) if pgid.isdigit() and pgid != "0" else None
        out.processes.append(StoppedProcess(
            name if name != "-" else "(no pid file)", pid, "left" if name == "-" else outcome,
            tuple(int(p) for p in left if p.isdigit())))
    return out


async def stop_node(pool: RemotePool, runtime: Runtime, session: str, node: str, *, grace_s: float,
                    launch_id: str | None = None, names: Iterable[str] | None = None) -> NodeStop:
    nonce = new_nonce()
    script = stop_script(session, node, grace_s=grace_s, nonce=nonce, launch_id=launch_id, names=names)
    try:
        result = await runtime.run_script(pool, node, script, timeout=grace_s + KILL_WAIT_S + 60.0)
    except RemoteError as exc:
        return NodeStop(node, error=str(exc))
    stopped = parse_stop(node, result.stdout, nonce)
    if result.exit_status not in (0, 1) or (result.exit_status == 1 and stopped.ok):
        detail = result.stderr.strip() or f"exit status {result.exit_status}"
        stopped.error = f"the stop script failed: {detail}"
    return stopped


async def stop(pool: RemotePool, nodes: Sequence[str], session: str, *, runtime: Runtime | None = None,
               grace_s: float = 30.0, launch_id: str | None = None,
               names: Mapping[str, Iterable[str]] | None = None) -> StopReport:
    """Stop the session's processes on `nodes`, in parallel (see the module docstring).

    `launch_id` + `names` (node -> process names) restrict it to what one launch started:
    its cleanup never touches an earlier launch that is still running.
    """
    rt = runtime or Runtime()
    results = await asyncio.gather(*(
        stop_node(pool, rt, session, n, grace_s=grace_s, launch_id=launch_id,
                  names=None if names is None else list(names.get(n, ())))
        for n in nodes))
    return StopReport(dict(zip(nodes, results)))


# ------------------------------------------------------------------ status


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the run directory. state: running | exited (with its status) | gone (died
    without a status: killed) | not_running (in launched.json, no pid file: stopped or never started)."""

    node: str
    name: str
    role: str | None
    port: int | None
    state: str
    pid: int | None = None
    exit_status: int | None = None
    answering: bool | None = None   # HTTP 200 on its health path(s); None: not asked (not running)
    health_host: str | None = None
    health_paths: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.role or '?'} {self.node}:{self.port if self.port is not None else '?'}"


@dataclass
class StatusReport:
    processes: list[ProcessStatus]
    records: dict[str, dict]            # node -> its launched.json (parsed), when present
    errors: dict[str, str]              # node -> why it could not be read

    @property
    def running(self) -> list[ProcessStatus]:
        return [p for p in self.processes if p.state == "running"]

    def lines(self) -> list[str]:
        out = [f"{n}: status unknown: {e}" for n, e in self.errors.items()]
        for p in self.processes:
            extra = ""
            if p.state == "running":
                extra = f" pid {p.pid}, " + ("answering" if p.answering else "not answering") + \
                        f" on {p.health_host}:{p.port}"
            elif p.state == "exited":
                extra = f" with status {p.exit_status}"
            out.append(f"{p.node}: {p.name} ({p.label}) {p.state}{extra}")
        if not out:
            out.append("nothing launched")
        return out


def status_script(session: str, nonce: str) -> str:
    """Frames: `record` (launched.json), then per pid file `pid:<name>` = `<state> <pid> [<exit>]`."""
    return f"""set -u
set -f
PDW_N={nonce}
{PRELUDE}
cd -- {home_path(run_dir(session))} 2>/dev/null || exit 0
if [ -f {RECORD_FILE} ]; then pdw_frame record; cat {RECORD_FILE}; pdw_end 0; fi
set +f
for f in *.pid; do
  [ -f "$f" ] || continue
  n=${{f%.pid}}
  {{ read -r g < "$f"; }} 2>/dev/null || g=
  if pdw_alive "$g"; then s=running
  elif [ -f "$n.exit" ]; then {{ read -r x < "$n.exit"; }} 2>/dev/null; s="exited $g ${{x:-?}}"; g=
  else s=gone; fi
  pdw_kv "pid:$n" "$s $g"
done
"""


async def status(pool: RemotePool, nodes: Sequence[str], session: str, *, runtime: Runtime | None = None,
                 hosts: Mapping[str, str] | None = None, timeout: float = 60.0) -> StatusReport:
    """What runs on `nodes` for `session`: pid files, liveness, and whether each port answers.

    The record (launched.json) gives each process's role, port and health paths; `hosts`
    (node -> address) overrides the health address recorded at launch.
    """
    rt = runtime or Runtime()

    async def one(node: str) -> tuple[dict, dict[str, str], str | None]:
        nonce = new_nonce()
        try:
            result = await rt.run_script(pool, node, status_script(session, nonce), timeout=timeout)
        except RemoteError as exc:
            return {}, {}, str(exc)
        frames = split_output(result.stdout, nonce)
        record: dict = {}
        if "record" in frames:
            try:
                record = json.loads(frames["record"].stdout)
            except ValueError:
                record = {}
        pids = {k.removeprefix("pid:"): v.stdout.strip() for k, v in frames.items() if k.startswith("pid:")}
        return record, pids, None

    answers = await asyncio.gather(*(one(n) for n in nodes))
    records: dict[str, dict] = {}
    errors: dict[str, str] = {}
    procs: list[ProcessStatus] = []
    for node, (record, pids, error) in zip(nodes, answers):
        if error is not None:
            errors[node] = error
            continue
        if record:
            records[node] = record
        known = {p["name"]: p for p in record.get("processes", []) if p.get("node") == node}
        for name in sorted(set(known) | set(pids)):
            rec = known.get(name, {})
            words = pids.get(name, "").split()
            state = words[0] if words else "not_running"
            pid = exit_status = None
            if state in ("running", "gone") and len(words) > 1 and words[1].isdigit():
                pid = int(words[1])
            if state == "exited":
                pid = int(words[1]) if len(words) > 1 and words[1].isdigit() else None
                exit_status = int(words[2]) if len(words) > 2 and words[2].lstrip("-").isdigit() else None
            host = (hosts or {}).get(node) if rec.get("role") != "proxy" else None
            procs.append(ProcessStatus(
                node=node, name=name, role=rec.get("role"), port=rec.get("port"), state=state, pid=pid,
                exit_status=exit_status, health_host=host or rec.get("health_host"),
                health_paths=tuple(rec.get("health_paths", ("/health",)))))
    async with aiohttp.ClientSession() as client:
        checked = await asyncio.gather(*(
            http_ok(client, p.health_host, p.port, p.health_paths)
            if p.state == "running" and p.health_host and p.port else _none()
            for p in procs))
    procs = [dataclasses.replace(p, answering=a) for p, a in zip(procs, checked)]
    return StatusReport(procs, records, errors)


async def _none() -> None:
    return None


__all__ = [
    "LAUNCH_ENV",
    "NodeStop",
    "ProcessStatus",
    "RECORD_FILE",
    "StatusReport",
    "StopReport",
    "StoppedProcess",
    "launch_marker",
    "session_marker_expr",
    "status",
    "status_script",
    "stop",
    "stop_node",
    "stop_script",
]

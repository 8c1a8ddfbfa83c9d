"""Launch a deployment: every instance at once, then the proxy once they are healthy.

1. Refuse early, starting nothing, when a process's port already answers (a previous run
   still up would otherwise pass the health checks in its place).
2. Upload the ranktable, if given, through the runtime (inside the container when there is one).
3. One round trip per node, all nodes in parallel: refuse if any pid file of the run dir still
   names a live process; check the files the commands need; install launched.json, the
   launchers (pdwizard.scripts text) and the proxy's files; start the node's instances
   detached; print their pids. Prefill and decode instances do not wait on each other at
   start-up, and HCCL's connect timeout punishes a slow sequence: they all start together.
4. Poll: every round, one liveness call per node (all its processes at once) and one HTTP GET
   per starting process, until each is healthy or its role's deadline passes. A process that
   exits, at any time, fails the launch with its last 30 log lines and the diagnoses they
   match (diagnoses.toml).
5. Start the proxy (one round trip on its node) and poll it the same way. When the plan says
   `proxy_with_instances` (pdwizard's own proxy, which keeps a backend out of rotation until it
   answers), the proxy is started in step 3 with the instances, watched for liveness with them,
   and only polled for health once they are healthy: its start-up overlaps theirs.

Liveness (the SSH round trip) runs every `liveness_interval` (default: every round), HTTP health
every `poll_interval`: a fast HTTP poll sees an instance ready soon after it is, without an SSH
command per node that often; an instance is healthy when it answers and its last liveness
check found it running.

On any failure, or cancellation, the launch stops what *it* started (stop with its launch
id: an earlier launch still running is never touched) unless told not to.

Each process runs as `setsid sh -c <wrapper>`: the wrapper writes its pid (= its process
group and session id) to `<name>.pid`, runs the launcher with bash from $HOME, records the
exit status in `<name>.exit`; stdin is /dev/null, stdout and stderr are appended to
`<name>.log` after a `=== pdwizard launch ...` header line. Nothing ties it to the SSH
session: it survives the connection closing, and it does not carry the launch script's
PDWIZARD_RUN_ID (RemotePool kills a timed-out or cancelled command by it). Every process carries
PDWIZARD_SESSION, PDWIZARD_PROCESS and PDWIZARD_LAUNCH in its environment, so stop finds its
children too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import aiohttp

from pdwizard import __version__
from pdwizard.errors import RemoteError
from pdwizard.deploy.diagnose import Diagnosis, diagnose
from pdwizard.deploy.health import ProcState, Readiness, by_node, http_ok, poll_node, port_answers
from pdwizard.deploy.plan import DeployPlan, ProcessSpec, run_dir
from pdwizard.deploy.shell import PRELUDE, PROCESS_ENV, heredoc_install, home_path, quote
from pdwizard.deploy.stop import LAUNCH_ENV, LOCK_DIR, RECORD_FILE, StopReport, stop
from pdwizard.probe import new_nonce
from pdwizard.ranktable_upload import upload_script
from pdwizard.remote.pool import RUN_ID_VAR, RemotePool

POLL_INTERVAL_S = 1.0
UNREACHABLE_ROUNDS = 3  # consecutive failed liveness calls before a node counts as lost
POLL_TIMEOUT_S = 30.0  # one liveness round trip
_START_WAIT_TICKS = 500  # x 0.02 s for a started wrapper to write its pid file
_BEFORE_START = (3, 4, 5, 10, 11, 12)  # launch script exits that happen before it starts anything

# The detached wrapper: $1 name, $2 interpreter for the launcher, $3 the run dir (absolute).
_WRAPPER = (
    'echo $$ > "$3/$1.pid.tmp" && mv -f "$3/$1.pid.tmp" "$3/$1.pid"\n'
    'cd "$HOME" 2>/dev/null || cd /\n'
    '"$2" "$3/$1.sh"\n'
    's=$?\n'
    'echo "$s" > "$3/$1.exit"\n'
    'printf "=== pdwizard: %s exited with status %s at %s ===\\n" "$1" "$s" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"\n'
)


# ------------------------------------------------------------------ results


@dataclass
class LaunchedProcess:
    spec: ProcessSpec
    pid: int | None = None
    state: str = "pending"        # pending | starting | healthy | failed
    started_at: float | None = None
    healthy_after_s: float | None = None
    awaited_at: float | None = None  # when its start-up deadline began (None: started_at)


@dataclass
class Failure:
    """Why the launch stopped: one process (or a whole node when `process` is None)."""

    node: str
    reason: str
    process: str | None = None
    role: str | None = None
    hint: str | None = None
    exit_status: int | None = None
    log_tail: list[str] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)

    def lines(self) -> list[str]:
        who = f"{self.process} on {self.node}" if self.process else f"node {self.node}"
        out = [f"{who}: {self.reason}"]
        if self.hint:
            out.append(f"  fix: {self.hint}")
        for d in self.diagnoses:
            out.append(f"  diagnosis {d.id}: {d.meaning}")
            out.append(f"    matched: {d.line}")
            out.append(f"    fix: {d.fix}")
        if self.log_tail:
            out.append(f"  last {len(self.log_tail)} log line(s):")
            out.extend(f"    | {ln}" for ln in self.log_tail)
        return out


@dataclass
class LaunchResult:
    ok: bool
    launch_id: str
    processes: dict[str, LaunchedProcess]
    failures: list[Failure] = field(default_factory=list)
    cleanup: StopReport | None = None
    readiness: str = ""
    duration_s: float = 0.0

    def lines(self) -> list[str]:
        out = [f"launch {'ready' if self.ok else 'FAILED'}: {self.readiness} ({self.duration_s:.1f} s)"]
        for f in self.failures:
            out.extend(f.lines())
        if self.cleanup is not None:
            out.append("cleanup:")
            out.extend(f"  {ln}" for ln in self.cleanup.lines())
        return out


class LaunchObserver:
    """What a launch reports while it runs. The default ignores everything; the replay prints,
    the TUI shows. `readiness` is called every poll round (about once a second): show the line
    in place, or print it when it changes. Exceptions raised here are not caught."""

    def readiness(self, line: str, elapsed_s: float) -> None:
        pass

    def event(self, text: str) -> None:
        pass

    def failure(self, failure: Failure) -> None:
        pass


# ------------------------------------------------------------------ scripts


def record(plan: DeployPlan, launch_id: str) -> dict:
    """launched.json: what this launch runs, on every node (identical on each of them)."""
    return {
        "pdwizard": __version__,
        "session": plan.session,
        "launch_id": launch_id,
        "launched_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "runtime": {"container": plan.runtime.container},
        "processes": [
            {"name": p.name, "node": p.node, "role": p.role, "port": p.port, "label": p.label,
             "health_host": p.health_host, "health_paths": list(p.health_paths), "log": p.log_file,
             "argv": list(p.argv)}
            for p in plan.processes
        ],
    }


def launch_script(plan: DeployPlan, node: str, *, start: Sequence[ProcessSpec], launch_id: str, nonce: str,
                  install: Sequence[ProcessSpec] = (), record_text: str | None = None,
                  busy_check: Iterable[str] | None = None, requires: Iterable[str] = ()) -> str:
    """The `sh -s` script for one node (see the module docstring).

    `busy_check`: process names whose live pid file refuses the launch; None: every pid file.
    Output lines `@@PDW <nonce> started|nostart|busy|missing|locked ...`; exit 10 busy, 11 missing,
    12 another launch holds the run dir's lock.
    """
    lines = [
        "set -u", "set -f", "umask 022", f"PDW_N={nonce}", PRELUDE,
        f"d={home_path(run_dir(plan.session))}",
        'mkdir -p -- "$d" || { echo "cannot create the run directory $d" >&2; exit 3; }',
        'cd -- "$d" || exit 3',
        "d=$PWD",
        # one launch at a time per run dir; stop waits for this lock to go (see stop.py)
        f"if ! mkdir {LOCK_DIR} 2>/dev/null; then",
        f'  {{ read -r pdw_o < {LOCK_DIR}/pid; }} 2>/dev/null || pdw_o=',
        '  if pdw_alive "$pdw_o"; then echo "@@PDW $PDW_N locked $pdw_o"; exit 12; fi',
        "fi",
        f"echo $$ > {LOCK_DIR}/pid",
        f"trap 'rm -rf \"$d\"/{LOCK_DIR}' EXIT",
        "trap 'exit 1' HUP INT TERM",
        'command -v setsid >/dev/null 2>&1 || { echo "setsid is not installed on this node (util-linux)" >&2; exit 4; }',
        "if command -v bash >/dev/null 2>&1; then pdw_sh=bash; else pdw_sh=sh; fi",
        # `setsid -f` (util-linux >= 2.31) forks by itself; a `&` job of a non-interactive sh would
        # start with SIGINT and SIGQUIT ignored, and vLLM would inherit that
        "if setsid -f true < /dev/null > /dev/null 2>&1; then pdw_bg=0; else pdw_bg=1; fi",
        "busy=0",
        "pdw_busy() {",
        '  { read -r pdw_b < "$1"; } 2>/dev/null || pdw_b=',
        '  if pdw_alive "$pdw_b"; then echo "@@PDW $PDW_N busy ${1%.pid} $pdw_b"; busy=1; fi',
        "}",
    ]
    if busy_check is None:
        lines += ["set +f", 'for f in *.pid; do [ -f "$f" ] && pdw_busy "$f"; done', "set -f"]
    else:
        lines += [f'[ -f {quote(n + ".pid")} ] && pdw_busy {quote(n + ".pid")}' for n in busy_check]
    lines.append('[ "$busy" = 0 ] || exit 10')
    reqs = list(requires)
    if reqs:
        lines.append("missing=0")
        for path in reqs:
            lines.append(f'( cd "$HOME" 2>/dev/null || cd /; [ -e {quote(path)} ] ) || '
                         f'{{ printf "@@PDW %s missing %s\\n" "$PDW_N" {quote(path)}; missing=1; }}')
        lines.append('[ "$missing" = 0 ] || exit 11')
    if record_text is not None:
        lines.append(heredoc_install(RECORD_FILE, record_text, nonce=new_nonce()).rstrip("\n"))
    for spec in install:
        for fname, text in spec.files:
            lines.append(heredoc_install(quote(fname), text, nonce=new_nonce()).rstrip("\n"))
        lines.append(heredoc_install(quote(f"{spec.name}.sh"), spec.script, mode="755",
                                     nonce=new_nonce()).rstrip("\n"))
    lines += [
        f"PDW_WRAP={quote(_WRAPPER)}",
        f"PDW_MARK={home_path(run_dir(plan.session))}",
        f"PDW_LAUNCH={quote(launch_id)}",
        "pdw_start() {",
        '  rm -f -- "$1.pid" "$1.exit"',
        f'  printf "=== pdwizard launch %s %s session %s ===\\n" "$1" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" '
        f'{quote(plan.session)} >> "$1.log"',
        # PDWIZARD_RUN_ID emptied: the process must not die with this launch script's command when
        # RemotePool kills that (a timeout, a cancellation) by its run id; stop owns it
        '  if [ "$pdw_bg" = 0 ]; then',
        f'    PDWIZARD_SESSION="$PDW_MARK" {PROCESS_ENV}="$1" {LAUNCH_ENV}="$PDW_LAUNCH" {RUN_ID_VAR}= \\',
        '      setsid -f sh -c "$PDW_WRAP" pdwizard-wrapper "$1" "$pdw_sh" "$d" < /dev/null >> "$1.log" 2>&1',
        '  else',
        f'    PDWIZARD_SESSION="$PDW_MARK" {PROCESS_ENV}="$1" {LAUNCH_ENV}="$PDW_LAUNCH" {RUN_ID_VAR}= \\',
        '      setsid sh -c "$PDW_WRAP" pdwizard-wrapper "$1" "$pdw_sh" "$d" < /dev/null >> "$1.log" 2>&1 &',
        '  fi',
        "}",
        "pdw_wait() {",
        "  i=0",
        f'  while [ ! -s "$1.pid" ] && [ $i -lt {_START_WAIT_TICKS} ]; do sleep 0.02 2>/dev/null || pdw_nap; '
        'i=$((i + 1)); done',
        '  if [ -s "$1.pid" ]; then',
        '    { read -r p < "$1.pid"; } 2>/dev/null',
        '    echo "@@PDW $PDW_N started $1 $p"',
        '  else echo "@@PDW $PDW_N nostart $1"; fi',
        "}",
    ]
    lines += [f"pdw_start {quote(s.name)}" for s in start]
    lines += [f"pdw_wait {quote(s.name)}" for s in start]
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


@dataclass
class _NodeLaunch:
    started: dict[str, int] = field(default_factory=dict)
    nostart: list[str] = field(default_factory=list)
    busy: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    locked: int | None = None


def parse_launch(stdout: str, nonce: str) -> _NodeLaunch:
    tag = f"@@PDW {nonce} "
    out = _NodeLaunch()
    for line in stdout.splitlines():
        if not line.startswith(tag):
            continue
        word, _, rest = line[len(tag):].partition(" ")
        if word == "missing":
            out.missing.append(rest)
            continue
        if word == "locked":
            out.locked = int(rest) if rest.strip().isdigit() else 0
            continue
        name, _, pid = rest.partition(" ")
        if word == "started" and pid.strip().isdigit():
            out.started[name] = int(pid)
        elif word in ("nostart", "started"):
            out.nostart.append(name)
        elif word == "busy":
            out.busy[name] = int(pid) if pid.strip().isdigit() else 0
    return out


# ------------------------------------------------------------------ the launch


async def launch(pool: RemotePool, plan: DeployPlan, *, observer: LaunchObserver | None = None,
                 ranktable: str | None = None, poll_interval: float = POLL_INTERVAL_S,
                 liveness_interval: float | None = None, cleanup_on_failure: bool = True) -> LaunchResult:
    """Launch `plan` (see the module docstring); never raises for a failed launch, only
    for bugs (and re-raises cancellation after cleaning up). `poll_interval`: seconds between
    two health rounds; `liveness_interval`: between two liveness round trips (None: every round)."""
    live = poll_interval if liveness_interval is None else max(poll_interval, liveness_interval)
    return await _Launch(pool, plan, observer or LaunchObserver(), poll_interval, live).run(
        ranktable, cleanup_on_failure)


class _Launch:
    def __init__(self, pool: RemotePool, plan: DeployPlan, observer: LaunchObserver, interval: float,
                 liveness_interval: float | None = None) -> None:
        self.pool, self.plan, self.obs, self.interval = pool, plan, observer, interval
        self.liveness_interval = interval if liveness_interval is None else liveness_interval
        self.early_proxy = plan.proxy is not None and plan.proxy_with_instances
        self.launch_id = secrets.token_hex(8)
        self.procs = {p.name: LaunchedProcess(p) for p in plan.processes}
        self.ready = Readiness.of(plan)
        self.t0 = time.monotonic()
        self.started: dict[str, list[str]] = {}  # node -> names this launch started
        self.misses: dict[str, int] = {}

    def result(self, failures: list[Failure], cleanup: StopReport | None = None) -> LaunchResult:
        return LaunchResult(ok=not failures, launch_id=self.launch_id, processes=self.procs, failures=failures,
                            cleanup=cleanup, readiness=self.ready.line(),
                            duration_s=round(time.monotonic() - self.t0, 3))

    async def run(self, ranktable: str | None, cleanup: bool) -> LaunchResult:
        try:
            failures = await self._steps(ranktable)
        except BaseException:
            if cleanup and self.started:
                await asyncio.shield(self._cleanup())
            raise
        report = None
        if failures:
            for f in failures:
                self.obs.failure(f)
            self._tick()
            if cleanup and self.started:
                report = await self._cleanup()
        return self.result(failures, report)

    async def _steps(self, ranktable: str | None) -> list[Failure]:
        plan = self.plan
        self.obs.event(f"launch {self.launch_id}: {len(plan.instances)} instance(s)"
                       f"{' and the proxy' if plan.proxy else ''} on {', '.join(plan.nodes)} "
                       f"({plan.runtime.describe})")
        failures = await self._ports_free()
        if failures:
            return failures
        if ranktable is not None:
            failures = await self._upload(ranktable)
            if failures:
                return failures
        failures = await self._start_all()
        if failures:
            return failures
        failures = await self._watch({p.name for p in plan.instances})
        if failures or plan.proxy is None:
            return failures
        if self.early_proxy:  # its deadline runs from now: it could not answer for the instances before
            self.ready.set(plan.proxy.name, "starting")
            self.procs[plan.proxy.name].awaited_at = time.monotonic()
        else:
            failures = await self._start_proxy(plan.proxy)
            if failures:
                return failures
        return await self._watch({plan.proxy.name})

    # -------------------------------------------------------------- steps

    async def _ports_free(self) -> list[Failure]:
        specs = list(self.plan.processes)
        answers = await asyncio.gather(*(port_answers(p.health_host, p.port) for p in specs))
        return [Failure(p.node, f"port {p.port} on {p.health_host} already answers, before anything was started",
                        process=p.name, role=p.role,
                        hint="an earlier launch still runs (pdwizard --replay SESSION --status / --stop), or "
                             "another program holds the port: stop it or change the port in the session")
                for p, busy in zip(specs, answers) if busy]

    async def _upload(self, text: str) -> list[Failure]:
        path = self.plan.ranktable_path or f"~/{run_dir(self.plan.session)}/ranktable.json"
        nodes = list(dict.fromkeys(p.node for p in self.plan.instances))
        expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")

        async def one(node: str) -> Failure | None:
            nonce = new_nonce()
            try:
                result = await self.plan.runtime.run_script(
                    self.pool, node, upload_script(path, text, nonce=nonce, stamp=stamp),
                    timeout=self.plan.command_timeout_s)
            except RemoteError as exc:
                return Failure(node, f"cannot upload the ranktable: {exc.message}", hint=exc.hint)
            tag = f"@@PDW {nonce} sha256="
            got = next((ln[len(tag):] for ln in result.stdout.splitlines() if ln.startswith(tag)), None)
            if result.exit_status != 0 or got != expected:
                detail = result.stderr.strip() or f"exit status {result.exit_status}, sha256 {got}"
                return Failure(node, f"cannot upload the ranktable to {path}: {detail}",
                               hint="check that the directory is writable and has space on that node")
            return None

        results = await asyncio.gather(*(one(n) for n in nodes))
        failures = [f for f in results if f is not None]
        if not failures:
            self.obs.event(f"ranktable {expected[:12]} in place on {', '.join(nodes)} ({path})")
        return failures

    async def _start_all(self) -> list[Failure]:
        plan = self.plan
        record_text = json.dumps(record(plan, self.launch_id), indent=2) + "\n"
        proxy = plan.proxy

        async def one(node: str) -> list[Failure]:
            specs = plan.on(node)
            start = [s for s in specs if s.role != "proxy" or self.early_proxy]
            nonce = new_nonce()
            script = launch_script(plan, node, start=start, install=specs, record_text=record_text, busy_check=None,
                                   requires=[r for s in specs for r in s.requires], launch_id=self.launch_id,
                                   nonce=nonce)
            return await self._run_launch(node, start, script, nonce)

        results = await asyncio.gather(*(one(n) for n in plan.nodes))
        failures = [f for fs in results for f in fs]
        if not failures:
            count = sum(len(v) for v in self.started.values()) - (1 if self.early_proxy else 0)
            if self.early_proxy:
                waiting = " and the proxy; the proxy is polled once they are healthy"
            else:
                waiting = "; the proxy waits for them" if proxy else ""
            self.obs.event(f"started {count} instance(s){waiting}")
            self._tick()
        return failures

    async def _start_proxy(self, spec: ProcessSpec) -> list[Failure]:
        nonce = new_nonce()
        script = launch_script(self.plan, spec.node, start=[spec], busy_check=[spec.name],
                               launch_id=self.launch_id, nonce=nonce)
        return await self._run_launch(spec.node, [spec], script, nonce)

    async def _run_launch(self, node: str, start: list[ProcessSpec], script: str, nonce: str) -> list[Failure]:
        # counted as started before the round trip: if it breaks or is cancelled half-way, the
        # cleanup (scoped to this launch id) still finds whatever the script managed to start
        self.started.setdefault(node, []).extend(s.name for s in start)
        try:
            result = await self.plan.runtime.run_script(self.pool, node, script, timeout=self.plan.command_timeout_s)
        except RemoteError as exc:
            return [Failure(node, f"launch failed: {exc.message}", hint=exc.hint)]
        parsed = parse_launch(result.stdout, nonce)
        if result.exit_status in _BEFORE_START or result.exit_status == 0:
            # the script reached its end, or refused before starting: what it did not report, it did not start
            maybe = set(parsed.started) | set(parsed.nostart)
            self.started[node] = [n for n in self.started[node] if n in maybe or n not in {s.name for s in start}]
            if not self.started[node]:
                del self.started[node]
        now = time.monotonic()
        for name, pid in parsed.started.items():
            proc = self.procs[name]
            proc.pid, proc.state, proc.started_at = pid, "starting", now
            if not (self.early_proxy and proc.spec.role == "proxy"):  # "waiting" for the instances
                self.ready.set(name, "starting")
            self.obs.event(f"started {name} ({proc.spec.label}) pid {pid}")
        if parsed.busy:
            running = ", ".join(f"{n} (pid {p})" for n, p in parsed.busy.items())
            return [Failure(node, f"processes of an earlier launch still run in the run directory: {running}",
                            hint="stop them first: pdwizard --replay SESSION --stop")]
        if parsed.locked:
            return [Failure(node, f"another launch of this session is in progress on this node (pid {parsed.locked})",
                            hint="wait for it to finish, or stop it: pdwizard --replay SESSION --stop")]
        if parsed.missing:
            return [Failure(node, f"not found on the node: {', '.join(parsed.missing)}",
                            hint="set [proxy] script to the path of load_balance_proxy_server_example.py in the "
                                 "node's vllm-ascend checkout (examples/disaggregated_prefill_v1/), absolute or "
                                 "relative to the SSH user's home")]
        failures = [Failure(node, "did not start: its wrapper wrote no pid file", process=n,
                            role=self.procs[n].spec.role, hint="see the log in the run directory")
                    for n in parsed.nostart]
        if result.exit_status != 0 and not failures:
            detail = result.stderr.strip() or f"exit status {result.exit_status}"
            failures.append(Failure(node, f"launch script failed: {detail}"))
        return failures

    async def _watch(self, waiting: set[str]) -> list[Failure]:
        """Poll until every process in `waiting` is healthy; any started process dying fails."""
        states: dict[str, ProcState] = {}
        last_poll: float | None = None
        async with aiohttp.ClientSession() as client:
            while True:
                began = time.monotonic()
                live = [self.procs[n] for ns in self.started.values() for n in ns]
                pending = [self.procs[n] for n in waiting]
                due = (last_poll is None or began - last_poll >= self.liveness_interval - 1e-3
                       or any(p.spec.name not in states for p in live))
                polled, http = await asyncio.gather(
                    self._poll([p.spec for p in live]) if due else _nothing(),
                    asyncio.gather(*(http_ok(client, p.spec.health_host, p.spec.port, p.spec.health_paths)
                                     for p in pending)))
                failures = []
                if polled is not None:
                    states, last_poll = polled, began
                    failures = self._dead(live, states)
                now = time.monotonic()
                for proc, ok in zip(pending, http):
                    st = states.get(proc.spec.name)
                    if ok and st is not None and st.alive and proc.state != "failed":
                        proc.state = "healthy"
                        proc.healthy_after_s = round(now - (proc.started_at or self.t0), 3)
                        self.ready.set(proc.spec.name, "healthy")
                        waiting.discard(proc.spec.name)
                        self.obs.event(f"{proc.spec.name} healthy after {proc.healthy_after_s:.1f} s")
                if not failures:
                    failures = await self._overdue(waiting, now)
                self._tick()
                if failures or not waiting:
                    return failures
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - began)))

    def _tick(self) -> None:
        self.obs.readiness(self.ready.line(), round(time.monotonic() - self.t0, 1))

    async def _poll(self, specs: Sequence[ProcessSpec], tails_for: Iterable[str] = ()) -> dict[str, ProcState]:
        """Liveness of `specs`, one round trip per node; a node that does not answer for
        UNREACHABLE_ROUNDS rounds in a row makes its processes 'lost'."""
        tails = set(tails_for)
        groups = by_node(specs)

        async def one(node: str, group: list[ProcessSpec]) -> dict[str, ProcState]:
            names = [s.name for s in group]
            try:
                states = await poll_node(self.pool, self.plan.runtime, self.plan.session, node, names,
                                         tails_for=[n for n in names if n in tails],
                                         timeout=min(self.plan.command_timeout_s, POLL_TIMEOUT_S))
            except RemoteError as exc:
                self.misses[node] = self.misses.get(node, 0) + 1
                if self.misses[node] >= UNREACHABLE_ROUNDS:
                    return {n: ProcState(n, f"lost: {exc.message}") for n in names}
                return {n: ProcState(n, "running") for n in names}  # unknown this round: keep waiting
            self.misses[node] = 0
            return states

        results = await asyncio.gather(*(one(n, g) for n, g in groups.items()))
        return {k: v for r in results for k, v in r.items()}

    def _dead(self, live: Sequence[LaunchedProcess], states: dict[str, ProcState]) -> list[Failure]:
        failures = []
        for proc in live:
            st = states.get(proc.spec.name)
            if st is None or st.alive or proc.state == "failed":
                continue
            proc.state = "failed"
            self.ready.set(proc.spec.name, "failed")
            took = time.monotonic() - (proc.started_at or self.t0)
            if st.state == "exited":
                reason = f"exited with status {st.exit_status} after {took:.1f} s"
            elif st.state == "gone":
                reason = f"died after {took:.1f} s without an exit status (killed by a signal?)"
            elif st.state == "nopid":
                reason = "its pid file disappeared (stopped by someone else?)"
            else:
                reason = f"node unreachable ({st.state})"
            failures.append(self._failure(proc, reason, st.exit_status, st.log_tail))
        return failures

    async def _overdue(self, waiting: set[str], now: float) -> list[Failure]:
        late = [self.procs[n] for n in sorted(waiting)
                if now - (self.procs[n].awaited_at or self.procs[n].started_at or self.t0)
                > self.plan.timeout_for(self.procs[n].spec.role)]
        if not late:
            return []
        states = await self._poll([p.spec for p in late], tails_for=[p.spec.name for p in late])
        failures = []
        for proc in late:
            proc.state = "failed"
            self.ready.set(proc.spec.name, "failed")
            limit = self.plan.timeout_for(proc.spec.role)
            st = states.get(proc.spec.name)
            failures.append(self._failure(
                proc, f"not healthy after {limit:.0f} s ({proc.spec.role} deadline): no HTTP 200 from "
                      f"http://{proc.spec.health_host}:{proc.spec.port}{proc.spec.health_paths[0]}",
                None, st.log_tail if st else None,
                hint=f"raise [stack] {proc.spec.role}_startup_timeout_s if the model loads slowly"))
        return failures

    def _failure(self, proc: LaunchedProcess, reason: str, status: int | None, tail: Sequence[str] | None,
                 hint: str | None = None) -> Failure:
        lines = list(tail or ())
        found = diagnose(lines)
        return Failure(proc.spec.node, reason, process=proc.spec.name, role=proc.spec.role,
                       hint=hint if not found else None, exit_status=status, log_tail=lines, diagnoses=found)

    async def _cleanup(self) -> StopReport:
        names = {node: list(dict.fromkeys(ns)) for node, ns in self.started.items()}
        self.obs.event(f"cleaning up: stopping {sum(len(v) for v in names.values())} process(es) this launch started")
        report = await stop(self.pool, list(names), self.plan.session, runtime=self.plan.runtime,
                            grace_s=self.plan.stop_grace_s, launch_id=self.launch_id, names=names)
        for line in report.lines():
            self.obs.event(f"cleanup: {line}")
        return report


async def _nothing() -> None:
    return None


__all__ = [
    "Failure",
    "LaunchObserver",
    "LaunchResult",
    "LaunchedProcess",
    "POLL_INTERVAL_S",
    "launch",
    "launch_script",
    "parse_launch",
    "record",
]

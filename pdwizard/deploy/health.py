"""Is it up? HTTP health from this machine, liveness from the node, and the readiness line.

- `http_ok`: GET http://host:port/<path> from this machine (aiohttp); healthy = HTTP 200 on
  any of the spec's paths (vLLM: /health; the proxies: /healthcheck).
- `poll_node`: one round trip per node per round, for all its processes at once: whether each
  one still runs (from its pid file and /proc), its exit status once it exited, and the last
  lines of its log (this launch's part) for those that exited or were asked for.
- `Readiness`: the counts behind `P 1/1  D 1/2  proxy waiting`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from pdwizard.deploy.plan import DeployPlan, ProcessSpec, run_dir
from pdwizard.deploy.runtime import Runtime
from pdwizard.deploy.shell import PRELUDE, home_path, quote
from pdwizard.probe import new_nonce, split_output
from pdwizard.remote.pool import RemotePool

TAIL_LINES = 30
HTTP_TIMEOUT_S = 2.0


async def http_ok(client: aiohttp.ClientSession, host: str, port: int, paths: Sequence[str],
                  timeout: float = HTTP_TIMEOUT_S) -> bool:
    """True when GET http://host:port<path> answers 200 for any path; never raises."""
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for path in paths:
        try:
            async with client.get(f"http://{netloc}{path}", timeout=aiohttp.ClientTimeout(total=timeout),
                                  allow_redirects=False) as resp:
                await resp.read()
                if resp.status == 200:
                    return True
        except (aiohttp.ClientError, asyncio.TimeoutError, TimeoutError, OSError, ValueError):
            return False  # nothing listens (or it hangs): no point trying the other paths
    return False


async def port_answers(host: str, port: int, timeout: float = HTTP_TIMEOUT_S) -> bool:
    """True when something accepts a TCP connection on host:port (a port in use)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


@dataclass(frozen=True)
class ProcState:
    """What the node says about one process."""

    name: str
    state: str                    # running | exited | gone (died without status) | nopid
    pid: int | None = None
    exit_status: int | None = None
    log_tail: tuple[str, ...] | None = None  # this launch's last lines, when fetched

    @property
    def alive(self) -> bool:
        return self.state == "running"


def poll_script(session: str, names: Iterable[str], *, tails_for: Iterable[str] = (), nonce: str,
                tail_lines: int = TAIL_LINES) -> str:
    """The `sh -s` script reporting each process (one frame `<name>`, plus `<name>.log` with
    the log's last lines when it exited, died, or is in `tails_for`)."""
    forced = set(tails_for)
    body = [f"set -u\nset -f\nPDW_N={nonce}", PRELUDE,
            "pdw_one() {\n"
            "  pdw_st=nopid; pdw_pid=\n"
            "  if [ -f \"$1.pid\" ]; then\n"
            "    { read -r pdw_pid < \"$1.pid\"; } 2>/dev/null || pdw_pid=\n"
            "    if [ -f \"$1.exit\" ]; then { read -r pdw_x < \"$1.exit\"; } 2>/dev/null; pdw_st=\"exited ${pdw_x:-?}\"\n"
            "    elif pdw_alive \"$pdw_pid\"; then pdw_st=running\n"
            "    elif [ -f \"$1.exit\" ]; then { read -r pdw_x < \"$1.exit\"; } 2>/dev/null; pdw_st=\"exited ${pdw_x:-?}\"\n"
            "    else pdw_st=gone; fi\n"
            "  fi\n"
            "  pdw_kv \"$1\" \"$pdw_st $pdw_pid\"\n"
            "  case $pdw_st in running|nopid) [ \"$2\" = 1 ] || return 0 ;; esac\n"
            f"  pdw_frame \"$1.log\"; pdw_tail \"$1.log\" {int(tail_lines)}; pdw_end 0\n"
            "}",
            f"cd -- {home_path(run_dir(session))} 2>/dev/null || {{ pdw_kv nodir 1; exit 0; }}"]
    for name in names:
        body.append(f"pdw_one {quote(name)} {1 if name in forced else 0}")
    return "\n".join(body) + "\n"


def parse_poll(stdout: str, nonce: str, names: Iterable[str]) -> dict[str, ProcState]:
    frames = split_output(stdout, nonce)
    out: dict[str, ProcState] = {}
    for name in names:
        frame = frames.get(name)
        if frame is None:
            out[name] = ProcState(name, "nopid")
            continue
        words = frame.stdout.split()
        state = words[0] if words else "nopid"
        pid = _int(words[2] if state == "exited" and len(words) > 2 else words[1] if len(words) > 1 else None)
        status = _int(words[1]) if state == "exited" and len(words) > 1 else None
        log = frames.get(f"{name}.log")
        tail = tuple(log.stdout.splitlines()) if log is not None else None
        out[name] = ProcState(name, state, pid, status, tail)
    return out


async def poll_node(pool: RemotePool, runtime: Runtime, session: str, node: str, names: Sequence[str], *,
                    tails_for: Iterable[str] = (), timeout: float = 60.0) -> dict[str, ProcState]:
    """One round trip: the state of `names` on `node` (raises RemoteError)."""
    nonce = new_nonce()
    script = poll_script(session, names, tails_for=tails_for, nonce=nonce)
    result = await runtime.run_script(pool, node, script, timeout=timeout)
    return parse_poll(result.stdout, nonce, names)


def _int(word: str | None) -> int | None:
    try:
        return int(word) if word is not None else None
    except ValueError:
        return None


# ------------------------------------------------------------------ readiness


@dataclass
class Readiness:
    """Per process: pending (not started) | starting | healthy | failed | stopped."""

    roles: Mapping[str, str]  # process name -> role
    states: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, plan: DeployPlan) -> Readiness:
        roles = {p.name: p.role for p in plan.processes}
        return cls(roles, {name: "pending" for name in roles})

    def set(self, name: str, state: str) -> None:
        self.states[name] = state

    def count(self, role: str, state: str) -> int:
        return sum(1 for n, r in self.roles.items() if r == role and self.states.get(n) == state)

    def total(self, role: str) -> int:
        return sum(1 for r in self.roles.values() if r == role)

    def line(self) -> str:
        """`P 1/1  D 1/2  proxy waiting` (failures are counted after the role's tally)."""
        parts = []
        for letter, role in (("P", "prefill"), ("D", "decode")):
            text = f"{letter} {self.count(role, 'healthy')}/{self.total(role)}"
            failed = self.count(role, "failed")
            parts.append(text + (f" ({failed} failed)" if failed else ""))
        proxy = [n for n, r in self.roles.items() if r == "proxy"]
        if proxy:
            state = self.states.get(proxy[0], "pending")
            word = {"pending": "waiting", "healthy": "ready"}.get(state, state)
            parts.append(f"proxy {word}")
        return "  ".join(parts)


def by_node(specs: Iterable[ProcessSpec]) -> dict[str, list[ProcessSpec]]:
    out: dict[str, list[ProcessSpec]] = {}
    for s in specs:
        out.setdefault(s.node, []).append(s)
    return out


__all__ = [
    "HTTP_TIMEOUT_S",
    "ProcState",
    "Readiness",
    "TAIL_LINES",
    "by_node",
    "http_ok",
    "parse_poll",
    "poll_node",
    "poll_script",
    "port_answers",
]

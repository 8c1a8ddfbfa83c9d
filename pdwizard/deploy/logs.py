"""Follow every process log live, line by line, prefixed by process, in bounded memory.

One SSH channel per log (`tail -F`, from this launch's header line on), through the runtime
(inside the container when there is one), via `RemotePool.stream`. A node has at most
`pool.stream_capacity` streams (its session limit minus what commands need); when it has more
logs than that, the ones that do not fit share one extra channel (a `sh` loop tagging each
line with its log), so every log is followed whatever the count.

Memory is bounded whatever the log rate: a line is at most `max_line_bytes`; each process
keeps its last `max_lines` lines (`recent`), and the merged feed `follow()` reads from holds at
most `max_lines`: when the consumer is slower than the logs, the oldest lines are dropped
and counted (`dropped`), and the next line `follow()` yields says how many of its process's
lines were skipped. The remote `tail` is never slowed down by a slow consumer, and never
loses lines on disk: the log file has them all.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from pdwizard.errors import RemoteError
from pdwizard.deploy.plan import ProcessSpec, run_dir
from pdwizard.deploy.runtime import Runtime
from pdwizard.deploy.shell import LOG_HEADER, PRELUDE, home_path, quote
from pdwizard.probe import new_nonce, split_output
from pdwizard.remote.pool import RemotePool

log = logging.getLogger(__name__)

DEFAULT_MAX_LINES = 1000
DEFAULT_MAX_LINE_BYTES = 16384

# $1: the log, relative to $HOME. From the line after the last launch header (all of it if none).
_TAIL_ONE = (
    'cd "$HOME" 2>/dev/null || cd /\n'
    f'n=$(grep -n "^{LOG_HEADER}" "$1" 2>/dev/null | tail -n 1 | cut -d: -f1)\n'
    'exec tail -n "+$(( ${n:-0} + 1 ))" -F "$1"\n'
)
# $1..$n: logs sharing one channel; each output line is "<index>\t<line>".
_TAIL_MANY = (
    'cd "$HOME" 2>/dev/null || cd /\n'
    'pdw_one() {\n'
    f'  n=$(grep -n "^{LOG_HEADER}" "$2" 2>/dev/null | tail -n 1 | cut -d: -f1)\n'
    '  tail -n "+$(( ${n:-0} + 1 ))" -F "$2" 2>/dev/null | while IFS= read -r l; do printf "%s\\t%s\\n" "$1" "$l"; done\n'
    '}\n'
    'i=0\n'
    'for f in "$@"; do pdw_one "$i" "$f" & i=$((i + 1)); done\n'
    'wait\n'
)


@dataclass(frozen=True)
class LogSource:
    """One log to follow: process `name` on `node`."""

    node: str
    name: str

    @classmethod
    def of(cls, specs: Iterable[ProcessSpec]) -> list[LogSource]:
        return [cls(s.node, s.name) for s in specs]


@dataclass(frozen=True)
class LogLine:
    process: str
    text: str
    seq: int          # 1-based per process since the tail began: a gap means dropped lines
    dropped: int = 0  # lines of this process skipped just before this one (set by follow())

    @property
    def prefixed(self) -> str:
        return f"{self.process} | {self.text}"


def tail_argv(session: str, name: str) -> list[str]:
    return ["sh", "-c", _TAIL_ONE, "pdwizard-tail", f"{run_dir(session)}/{name}.log"]


def tail_many_argv(session: str, names: Sequence[str]) -> list[str]:
    return ["sh", "-c", _TAIL_MANY, "pdwizard-tail", *(f"{run_dir(session)}/{n}.log" for n in names)]


class LogTail:
    """Follows `sources` once started; use as `async with LogTail(...) as tail: async for line in tail`."""

    def __init__(self, pool: RemotePool, session: str, sources: Sequence[LogSource], *,
                 runtime: Runtime | None = None, max_lines: int = DEFAULT_MAX_LINES,
                 max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
                 on_line: Callable[[LogLine], None] | None = None) -> None:
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError("each process may be followed once")
        self.pool, self.session, self.sources = pool, session, list(sources)
        self.runtime = runtime or Runtime()
        self.max_lines, self.max_line_bytes, self.on_line = max_lines, max_line_bytes, on_line
        self._recent = {n: collections.deque(maxlen=max_lines) for n in names}
        self._feed: collections.deque[LogLine] = collections.deque(maxlen=max_lines)
        self.received = {n: 0 for n in names}
        self.dropped = {n: 0 for n in names}      # lines the feed dropped before follow() read them
        self.errors: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the channels (returns at once; lines arrive in the background)."""
        by_node: dict[str, list[str]] = {}
        for s in self.sources:
            by_node.setdefault(s.node, []).append(s.name)
        for node, names in by_node.items():
            cap = self.pool.stream_capacity
            single, shared = (names, []) if len(names) <= cap else (names[:cap - 1], names[cap - 1:])
            for name in single:
                self._tasks.append(asyncio.create_task(self._pump(node, [name], tail_argv(self.session, name))))
            if shared:
                self._tasks.append(asyncio.create_task(
                    self._pump(node, shared, tail_many_argv(self.session, shared))))

    async def close(self) -> None:
        """Stop following: the remote tails are killed; follow() ends once the feed is read."""
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._wake.set()

    async def __aenter__(self) -> LogTail:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -------------------------------------------------------------- reading

    def recent(self, name: str) -> list[str]:
        """The last `max_lines` lines of one process (for a pane that shows one log)."""
        return list(self._recent[name])

    @property
    def buffered(self) -> int:
        """Lines waiting in the merged feed (never more than max_lines)."""
        return len(self._feed)

    def __aiter__(self) -> AsyncIterator[LogLine]:
        return self.follow()

    async def follow(self) -> AsyncIterator[LogLine]:
        """Every line in arrival order (per process: log order); ends after close(), or when
        every tail has ended, once the feed is empty."""
        last: dict[str, int] = {}
        while True:
            while self._feed:
                line = self._feed.popleft()
                gap = line.seq - last.get(line.process, 0) - 1
                last[line.process] = line.seq
                yield replace(line, dropped=gap) if gap else line
            if self._closed or (self._tasks and all(t.done() for t in self._tasks)):
                if not self._feed:
                    return
                continue
            self._wake.clear()
            await self._wake.wait()

    # -------------------------------------------------------------- internals

    def _add(self, name: str, text: str) -> None:
        self.received[name] += 1
        line = LogLine(name, text, self.received[name])
        self._recent[name].append(text)
        if len(self._feed) == self._feed.maxlen:
            self.dropped[self._feed[0].process] += 1
        self._feed.append(line)
        self._wake.set()
        if self.on_line is not None:
            try:
                self.on_line(line)
            except Exception:
                log.exception("on_line callback failed")

    async def _pump(self, node: str, names: list[str], argv: list[str]) -> None:
        many = len(names) > 1 or argv[2] == _TAIL_MANY
        try:
            stream = self.runtime.stream(self.pool, node, argv, max_line=self.max_line_bytes)
            async with contextlib.aclosing(stream) as lines:
                async for text in lines:
                    if not many:
                        self._add(names[0], text)
                        continue
                    index, sep, rest = text.partition("\t")
                    if sep and index.isdigit() and int(index) < len(names):
                        self._add(names[int(index)], rest)
        except RemoteError as exc:
            for n in names:
                self.errors[n] = str(exc)
                self._add(n, f"[pdwizard] following this log stopped: {exc.message}")
        finally:
            self._wake.set()


# ------------------------------------------------------------------ one-shot reads


@dataclass(frozen=True)
class LogRead:
    """A one-shot read of one log: how many lines the file has now, and the lines asked for."""

    total: int
    lines: tuple[str, ...]


def read_log_script(session: str, name: str, *, since: int | None, max_lines: int, nonce: str) -> str:
    """The `sh -s` script behind `read_log`: frames `count` (lines in the file) and `lines`."""
    lines = [f"set -u\nset -f\nPDW_N={nonce}", PRELUDE,
             f"cd -- {home_path(run_dir(session))} 2>/dev/null || {{ pdw_kv count 0; exit 0; }}",
             f"f={quote(name + '.log')}",
             '[ -f "$f" ] || { pdw_kv count 0; exit 0; }',
             'n=$(wc -l < "$f" | tr -d " ")',
             'pdw_kv count "$n"']
    if max_lines > 0:
        lines.append("pdw_frame lines")
        if since is None:
            lines.append(f'pdw_tail "$f" {int(max_lines)}')
        else:
            s = max(0, int(since))
            lines.append(f'[ "$n" -gt {s} ] && tail -n "+{s + 1}" "$f" | head -n "$((n - {s}))" | '
                         f'tail -n {int(max_lines)}')
        lines.append("pdw_end 0")
    return "\n".join(lines) + "\n"


async def read_log(pool: RemotePool, session: str, node: str, name: str, *, runtime: Runtime | None = None,
                   since: int | None = None, max_lines: int = 200, timeout: float = 60.0) -> LogRead:
    """One round trip: the line count of `<name>.log` and, when max_lines > 0, its lines after
    line `since` (None: this launch's part), at most the last `max_lines` of them. A missing
    log reads as empty. Raises RemoteError.

    Take the count before something happens (max_lines=0) and read `since` that count after:
    exactly the lines the process logged meanwhile (what the verification searches for a recompute).
    """
    nonce = new_nonce()
    script = read_log_script(session, name, since=since, max_lines=max_lines, nonce=nonce)
    result = await (runtime or Runtime()).run_script(pool, node, script, timeout=timeout)
    frames = split_output(result.stdout, nonce)
    count = frames.get("count")
    total = int(count.stdout.strip()) if count is not None and count.stdout.strip().isdigit() else 0
    got = frames.get("lines")
    return LogRead(total, tuple(got.stdout.splitlines()) if got is not None else ())


__all__ = ["LogLine", "LogRead", "LogSource", "LogTail", "read_log", "read_log_script", "tail_argv",
           "tail_many_argv"]

"""RemotePool: the one way pdwizard runs anything on a node.

One asyncssh connection per node, opened on first use and shared by every
caller (a per-node lock makes concurrent first uses open it once). Every command
has a deadline; on expiry the remote command and everything it started are
killed and the caller gets ``RemoteError(kind="timeout")``. A non-zero exit
status is data, not an error: checks need stderr and the status to explain a failure.

The node's login shell must be POSIX (sh, bash, dash, ksh, zsh): commands are
shlex-quoted and run as ``PDWIZARD_RUN_ID=<random>; export PDWIZARD_RUN_ID; <command>``
so a timed-out command can be found and killed (see ``_Exchange``).

Host keys are checked strictly against known_hosts (see ``hostkeys``); trust on
first use only ever records *unknown* keys. Only public-key authentication is
attempted: pdwizard never handles passwords, so it cannot leak them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import shlex
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncssh

from pdwizard.errors import RemoteError
from pdwizard.remote import failures
from pdwizard.remote.hostkeys import (
    HostKeyConflict,
    describe,
    host_key_status,
    known_hosts_line,
    known_hosts_path,
    load_known_hosts,
    lookup,
    record_host_key,
)
from pdwizard.remote.quoting import join_argv
from pdwizard.remote.target import SshTarget

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL_S = 15.0  # notice a dead idle connection within ~1 min
KEEPALIVE_COUNT_MAX = 4
DEFAULT_MAX_SESSIONS = 8  # below OpenSSH's MaxSessions default (10): room for a kill channel
_KILL_GRACE_S = 2.0  # how long to wait for the channel to close after killing
_KILL_TIMEOUT_S = 5.0  # the kill command itself
_OPEN_ATTEMPTS = 10  # session-open retries while sshd is at MaxSessions (~3 s in all)
_OPEN_RETRY_FIRST_S = 0.01
_OPEN_RETRY_MAX_S = 0.5
RUN_ID_VAR = "PDWIZARD_RUN_ID"
STREAM_RESERVED_SESSIONS = 2  # sessions per node streams never take: commands always find one
STREAM_MAX_LINE = 65536  # a longer line (no newline in sight) is cut: memory stays bounded
_STREAM_STDERR_KEEP = 4096  # bytes of a stream's stderr kept for the command log

# Kills every process whose *initial* environment carries this run's id: the
# command and all it spawned, even in new process groups. One grep over
# /proc/*/environ, a few rounds to catch processes forked meanwhile.
_KILL_SCRIPT = (
    "i=0; while [ $i -lt 3 ]; do i=$((i+1)); "
    "pids=$(grep -lzx {needle} /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3); "
    '[ -z "$pids" ] && break; echo $pids; kill -KILL $pids 2>/dev/null; done; true'
)


@dataclass
class CommandResult:
    """What one command did on one node.

    ``command`` is the shell line the caller asked for (``join_argv(argv)``, or
    ``sh -s`` for a script, whose text is in ``stdin``); the node runs it behind
    the run-id prefix described in the module docstring.
    """

    node: str
    command: str
    stdout: str
    stderr: str
    exit_status: int  # 128+N when killed by signal N; -1 when there is no status (timeout)
    duration_s: float
    stdin: str | None = None  # the script for run_script, so command logs can show it
    exit_signal: str | None = None  # e.g. "KILL" when the remote process died by a signal
    timed_out: bool = False  # only seen by on_command: run() raises on timeout

    @property
    def ok(self) -> bool:
        """Exit status 0 and not timed out."""
        return self.exit_status == 0 and not self.timed_out


class _HostKeyCheck:
    """Decides on the key one handshake presents, and remembers it for the error message.

    asyncssh calls ``decide`` only for a key that is *not* already trusted by the
    known_hosts we passed, so: any recorded key for the host means it changed
    (refuse); none means unknown (refuse unless trust-on-first-use).
    """

    def __init__(self, known: asyncssh.SSHKnownHosts, accept_unknown: bool) -> None:
        self.known = known
        self.accept_unknown = accept_unknown
        self.presented: asyncssh.SSHKey | None = None
        self.recorded: list[asyncssh.SSHKey] = []
        self.accepted_unknown = False

    def decide(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.presented = key
        self.recorded = lookup(self.known, host, port, addr)[0]
        if self.recorded or not self.accept_unknown:
            return False
        self.accepted_unknown = True  # written to known_hosts only once the connection is up
        return True


class _Client(asyncssh.SSHClient):
    def __init__(self, check: _HostKeyCheck) -> None:
        self._check = check

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._check.decide(host, addr, port, key)


class _NotStarted(Exception):
    """The session channel could not be opened because the connection is gone.

    The command never started, so retrying it on a fresh connection is safe.
    """


class RemotePool:
    """Reused SSH connections to a fixed set of nodes; see the module docstring."""

    def __init__(
        self,
        targets: Sequence[SshTarget],
        *,
        on_command: Callable[[CommandResult], None] | None = None,
        max_sessions_per_node: int = DEFAULT_MAX_SESSIONS,
    ) -> None:
        if max_sessions_per_node < 1:
            raise ValueError(f"max_sessions_per_node must be >= 1, got {max_sessions_per_node}")
        self._targets = _index_targets(targets)
        self._on_command = on_command
        self._max_sessions = max_sessions_per_node
        self._conns: dict[SshTarget, asyncssh.SSHClientConnection] = {}
        self._locks: dict[SshTarget, asyncio.Lock] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._stream_slots: dict[str, asyncio.Semaphore] = {}
        self._kill_locks: dict[str, asyncio.Lock] = {}
        self._shown_keys: dict[SshTarget, asyncssh.SSHKey] = {}
        #: Handshakes completed per target name (nodes and bastions): for diagnostics and tests.
        self.connections_opened: collections.Counter[str] = collections.Counter()

    @property
    def nodes(self) -> list[str]:
        """Node names in the order the targets were given."""
        return list(self._targets)

    def target(self, node: str) -> SshTarget:
        """The target of ``node``; ValueError names the known nodes when it is not one."""
        try:
            return self._targets[node]
        except KeyError:
            known = ", ".join(self._targets) or "none"
            raise ValueError(f"unknown node {node!r}; this pool has: {known}") from None

    # ------------------------------------------------------------------ connecting

    async def connect(self, node: str) -> None:
        """Open (or reuse) the connection to ``node``; raises RemoteError."""
        await self._connection(self.target(node))

    async def connect_all(self) -> dict[str, RemoteError | None]:
        """Connect every node in parallel: per node, the RemoteError or None.

        One node failing never stops the others; only a non-RemoteError (a bug)
        is re-raised, after every attempt has finished.
        """
        names = self.nodes
        outcomes = await asyncio.gather(*(self.connect(n) for n in names), return_exceptions=True)
        result: dict[str, RemoteError | None] = {}
        for name, outcome in zip(names, outcomes):
            if isinstance(outcome, BaseException) and not isinstance(outcome, RemoteError):
                raise outcome
            result[name] = outcome
        return result

    async def _connection(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        """The live connection to ``target``, opened once however many callers ask at once."""
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:
            conn = self._conns.get(target)
            if conn is not None and not conn.is_closed():
                return conn
            if conn is not None:
                log.info("connection to %s was closed; reconnecting", target.name)
                self._conns.pop(target, None)
            conn = await self._open(target)
            self._conns[target] = conn
            return conn

    def _drop(self, target: SshTarget, conn: asyncssh.SSHClientConnection) -> None:
        if self._conns.get(target) is conn:
            del self._conns[target]
        conn.close()

    async def _open(self, target: SshTarget) -> asyncssh.SSHClientConnection:
        tunnel = await self._tunnel_for(target)
        options = _auth_options(target)
        known = _known_hosts(target)
        check = _HostKeyCheck(known, target.trust_on_first_use)
        try:
            conn = await asyncssh.connect(
                target.host,
                target.port,
                **_tunnel_kw(tunnel),
                **options,
                known_hosts=known,
                client_factory=lambda: _Client(check),
                connect_timeout=target.connect_timeout,
                keepalive_interval=KEEPALIVE_INTERVAL_S,
                keepalive_count_max=KEEPALIVE_COUNT_MAX,
                config=None,  # the session file, not ~/.ssh/config, decides how to connect
            )
        except asyncssh.HostKeyNotVerifiable:
            raise await self._host_key_failure(target, check, known, tunnel) from None
        except asyncssh.PermissionDenied as exc:
            raise _mapped(target, exc) from exc
        except (asyncssh.DisconnectError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError) as exc:
            # OpenSSH silently drops a client accepting only key types it lacks: maybe a changed key
            mismatch = await self._key_type_mismatch(target, known, tunnel)
            raise mismatch or _mapped(target, exc) from exc
        except Exception as exc:
            raise _mapped(target, exc) from exc
        if check.accepted_unknown:
            await self._record_first_use(target, check.presented, conn)
        self.connections_opened[target.name] += 1
        log.debug("connected to %s (%s)", target.name, target.display)
        return conn

    async def _tunnel_for(self, target: SshTarget) -> asyncssh.SSHClientConnection | None:
        """The bastion connection (reused), or None; bastion failures become kind "jump"."""
        if target.jump is None:
            return None
        try:
            return await self._connection(target.jump)
        except RemoteError as exc:
            raise failures.jump_failed(target, exc) from exc

    # ------------------------------------------------------------------ host keys

    async def _host_key_failure(
        self,
        target: SshTarget,
        check: _HostKeyCheck,
        known: asyncssh.SSHKnownHosts,
        tunnel: asyncssh.SSHClientConnection | None,
    ) -> RemoteError:
        """Unknown or changed? Say which, with fingerprints and the known_hosts line."""
        key, recorded = check.presented, check.recorded
        if key is None:  # asyncssh refused before asking us (revoked key, bad certificate)
            recorded = lookup(known, target.host, target.port)[0]
            key = await self._current_key_or_none(target, tunnel, recorded)
        if key is not None and host_key_status(known, target, key) == "unknown":
            self._shown_keys[target] = key
            return failures.host_key_unknown(target, key)
        return failures.host_key_changed(target, recorded, key)

    async def _key_type_mismatch(
        self, target: SshTarget, known: asyncssh.SSHKnownHosts, tunnel: asyncssh.SSHClientConnection | None
    ) -> RemoteError | None:
        """host_key_changed when the server no longer offers any key type known_hosts records.

        A client restricted to the recorded key types meets a server without them
        as a dropped handshake (OpenSSH just closes), not as a key mismatch; left
        alone that would read "disconnected" and hide a possible interception.
        """
        recorded = lookup(known, target.host, target.port)[0]
        if not recorded:
            return None
        presented = await self._current_key_or_none(target, tunnel, recorded)
        if presented is None or presented in recorded:
            return None  # the recorded key is still offered: the drop had another cause
        detail = "" if presented.algorithm in {k.algorithm for k in recorded} else (
            " (no key of the recorded type is offered any more)"
        )
        return failures.host_key_changed(target, recorded, presented, detail=detail)

    async def _record_first_use(
        self, target: SshTarget, key: asyncssh.SSHKey | None, conn: asyncssh.SSHClientConnection
    ) -> None:
        """TOFU: the handshake proved the unknown key; write it, or refuse if it raced a change."""
        assert key is not None
        try:
            await asyncio.to_thread(record_host_key, target, key)
        except HostKeyConflict as exc:
            conn.close()
            detail = " (recorded by someone else while connecting)"
            raise failures.host_key_changed(target, exc.known, key, path=exc.path, detail=detail) from None
        except OSError as exc:
            conn.close()
            raise _record_failed(target, exc) from None
        self._shown_keys.pop(target, None)

    async def trust_host_key(self, node: str) -> str:
        """Record, on the operator's explicit request, the key ``node`` presents now; return the line.

        Walks the path outermost bastion first and records the first key not yet
        known, so a TUI that asks once per error reaches the node after at most one
        question per hop. A key that differs from the one last shown to the
        operator, or from one already recorded, is refused (host_key_changed).
        When every key is already known, the node's line is returned unchanged.
        """
        target = self.target(node)
        for hop in _hops(target):
            try:
                line, recorded = await self._trust_hop(hop)
            except RemoteError as exc:
                if hop is target:
                    raise
                raise failures.jump_failed(target, exc) from exc
            if recorded or hop is target:
                return line
        raise AssertionError("unreachable: the last hop is the node")

    async def _trust_hop(self, hop: SshTarget) -> tuple[str, bool]:
        """(known_hosts line, whether it was written now) for ``hop``'s current key."""
        tunnel = await self._tunnel_for(hop)
        known = _known_hosts(hop)
        recorded = lookup(known, hop.host, hop.port)[0]
        key = await self._current_key(hop, tunnel, recorded)
        status = host_key_status(known, hop, key)
        if status == "changed":
            raise failures.host_key_changed(hop, recorded, key)
        shown = self._shown_keys.get(hop)
        if shown is not None and shown != key:
            detail = f" (and it is not the key shown for confirmation, {describe(shown)})"
            raise failures.host_key_changed(hop, [shown], key, detail=detail)
        if status == "known":
            return known_hosts_line(hop.host, hop.port, key), False
        try:
            line = await asyncio.to_thread(record_host_key, hop, key)
        except HostKeyConflict as exc:
            raise failures.host_key_changed(hop, exc.known, key, path=exc.path) from None
        except OSError as exc:
            raise _record_failed(hop, exc) from None
        self._shown_keys.pop(hop, None)
        return line, True

    async def _current_key(
        self,
        target: SshTarget,
        tunnel: asyncssh.SSHClientConnection | None,
        recorded: Sequence[asyncssh.SSHKey] = (),
    ) -> asyncssh.SSHKey:
        """The host key the server proves in a key exchange (no authentication needed).

        Asks for the recorded key types first, as ssh does: a server with several
        host keys must not look "changed" just because it prefers another type.
        """
        if recorded:
            algs = sorted({alg.decode("ascii") for key in recorded for alg in key.sig_algorithms})
            with contextlib.suppress(RemoteError):
                return await self._server_key(target, tunnel, algs)
        return await self._server_key(target, tunnel)

    async def _current_key_or_none(
        self,
        target: SshTarget,
        tunnel: asyncssh.SSHClientConnection | None,
        recorded: Sequence[asyncssh.SSHKey] = (),
    ) -> asyncssh.SSHKey | None:
        """Best effort, only to make an error message more useful."""
        try:
            return await self._current_key(target, tunnel, recorded)
        except RemoteError:
            return None

    async def _server_key(
        self, target: SshTarget, tunnel: asyncssh.SSHClientConnection | None, algs: Sequence[str] = ()
    ) -> asyncssh.SSHKey:
        try:
            key = await asyncio.wait_for(
                asyncssh.get_server_host_key(
                    target.host, target.port, **_tunnel_kw(tunnel), server_host_key_algs=algs or (), config=None
                ),
                target.connect_timeout,
            )
        except Exception as exc:
            raise _mapped(target, exc) from exc
        if key is None:
            raise RemoteError(
                target.name,
                "disconnected",
                f"{target.display} completed a key exchange without presenting a host key",
                hint="the node's sshd offers GSS key exchange only; give it a host key",
            )
        return key

    # ------------------------------------------------------------------ commands

    async def run(
        self,
        node: str,
        argv: Sequence[str],
        *,
        timeout: float = 60.0,
        stdin: str | None = None,
    ) -> CommandResult:
        """Run ``argv`` on ``node``; a non-zero exit is returned, never raised.

        Raises RemoteError when the node cannot be reached (connect errors), when
        the command exceeds ``timeout`` seconds (the remote process is killed;
        kind "timeout"), or when the connection dies mid-command ("disconnected").
        ``timeout`` bounds the command; connecting first is bounded by the
        target's connect_timeout. stdin is always closed, so a command that reads
        it sees EOF, not a hang.
        """
        return await self._run_command(self.target(node), join_argv(argv), timeout, stdin)

    async def run_script(self, node: str, script: str, *, timeout: float = 120.0) -> CommandResult:
        """Run a POSIX sh script fed on stdin: one round trip for many tool calls."""
        return await self.run(node, ["sh", "-s"], timeout=timeout, stdin=script)

    @property
    def stream_capacity(self) -> int:
        """How many streams may run at once per node (the rest wait for one to end)."""
        return max(1, self._max_sessions - STREAM_RESERVED_SESSIONS)

    async def stream(
        self, node: str, argv: Sequence[str], *, max_line: int = STREAM_MAX_LINE
    ) -> AsyncIterator[str]:
        """Yield the stdout lines of a long-running command (``tail -F``) as they arrive.

        One SSH channel for the stream's whole life, counted against the node's session
        limit; at most ``stream_capacity`` streams run at once per node (more wait), so
        ``run`` always finds a free session. Lines come without their newline, decoded as
        UTF-8 (errors replaced); a line longer than ``max_line`` bytes comes in pieces, so
        memory stays bounded however the command writes. Nothing is accumulated: a slow
        consumer holds the channel's flow-control window and the remote writer waits.

        The iteration ends when the command closes its stdout. Leaving earlier (``break``
        inside ``contextlib.aclosing(pool.stream(...))``, or cancelling the task that
        iterates) kills the remote command and everything it started, as a timeout does.
        stderr is not yielded; its last 4 KiB go to the command log. Raises RemoteError
        for connect failures and a connection lost mid-stream ("disconnected"). No timeout:
        the caller decides when to stop.
        """
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        target = self.target(node)
        command = join_argv(argv)
        started = time.monotonic()
        streams = self._stream_slots.setdefault(node, asyncio.Semaphore(self.stream_capacity))
        async with streams, self._slot(node):
            run = await self._open_stream(target, command)
            assert run.process is not None
            errors = asyncio.ensure_future(_drain_tail(run.process.stderr, run.err, _STREAM_STDERR_KEEP))
            finished = False
            try:
                run.process.stdin.write_eof()
                pending = bytearray()
                while True:
                    try:
                        chunk = await run.process.stdout.read(65536)
                    except (asyncssh.Error, OSError) as exc:
                        raise failures.command_disconnected(target, command, str(exc) or type(exc).__name__) from None
                    if not chunk:
                        break
                    pending.extend(chunk)
                    start = 0
                    while (nl := pending.find(b"\n", start)) >= 0:
                        for piece in _pieces(pending, start, nl, max_line):
                            yield piece
                        start = nl + 1
                    del pending[:start]
                    while len(pending) >= max_line:
                        yield pending[:max_line].decode("utf-8", errors="replace")
                        del pending[:max_line]
                if pending:
                    yield pending.decode("utf-8", errors="replace")
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError, asyncssh.Error, OSError):
                    await asyncio.wait_for(run.process.wait_closed(), _KILL_GRACE_S)
                if run.process.exit_status is None and run.conn.is_closed():
                    raise failures.command_disconnected(target, command, "no exit status")
                finished = True
            finally:
                if not finished:
                    await asyncio.shield(self._kill(run))
                errors.cancel()
                self._notify(run.result(time.monotonic() - started))

    async def _open_stream(self, target: SshTarget, command: str) -> _Exchange:
        """A started exchange for a stream; reconnects once if the cached connection was dead."""
        for attempt in (1, 2):
            conn = await self._connection(target)
            run = _Exchange(conn, target, command, None)
            try:
                run.process = await run._open()
                return run
            except _NotStarted as exc:
                self._drop(target, conn)
                if attempt == 2:
                    raise failures.command_disconnected(target, command, str(exc), started=False) from None
        raise AssertionError("unreachable")

    async def _run_command(
        self, target: SshTarget, command: str, timeout: float, stdin: str | None
    ) -> CommandResult:
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 s, got {timeout!r}")
        async with self._slot(target.name):
            result = await self._run_reconnecting(target, command, timeout, stdin)
        self._notify(result)
        return result

    async def _run_reconnecting(
        self, target: SshTarget, command: str, timeout: float, stdin: str | None
    ) -> CommandResult:
        """Reconnect once when the cached connection turns out dead before the command started."""
        for attempt in (1, 2):
            conn = await self._connection(target)
            try:
                return await self._execute(conn, target, command, timeout, stdin)
            except _NotStarted as exc:
                self._drop(target, conn)
                if attempt == 2:
                    raise failures.command_disconnected(target, command, str(exc), started=False) from None
                log.info("connection to %s dropped (%s); reconnecting once", target.name, exc)
        raise AssertionError("unreachable")

    def _slot(self, node: str) -> asyncio.Semaphore:
        """Cap concurrent sessions per connection so sshd's MaxSessions never refuses one."""
        return self._slots.setdefault(node, asyncio.Semaphore(self._max_sessions))

    async def _execute(
        self,
        conn: asyncssh.SSHClientConnection,
        target: SshTarget,
        command: str,
        timeout: float,
        stdin: str | None,
    ) -> CommandResult:
        started = time.monotonic()
        run = _Exchange(conn, target, command, stdin)
        try:
            await asyncio.wait_for(run.communicate(), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            killed = await self._kill(run)
            self._notify(run.result(time.monotonic() - started, timed_out=True))
            raise failures.command_timeout(target, command, timeout, killed=killed) from None
        return run.result(time.monotonic() - started)

    async def _kill(self, run: _Exchange) -> bool:
        """Kill a timed-out command on the node; True when the node confirmed it.

        Three layers, because none works everywhere: the SSH "signal" request
        (OpenSSH refuses it for root logins), a kill-by-run-id command on the same
        connection (needs /proc and grep -z: every Linux node), then closing the
        channel (which alone leaves a silent process running under sshd).
        Kill commands are serialized per node so they always find a free session.
        """
        run.signal_kill()
        confirmed = False
        if run.process is not None:
            async with self._kill_locks.setdefault(run.target.name, asyncio.Lock()):
                confirmed = await run.kill_by_run_id()
        await run.close()
        return confirmed

    def _notify(self, result: CommandResult) -> None:
        """Feed the command log; a broken log must not turn a finished command into a failure."""
        if self._on_command is None:
            return
        try:
            self._on_command(result)
        except Exception:
            log.exception("on_command callback failed for %s on %s", result.command, result.node)

    # ------------------------------------------------------------------ closing

    async def close(self) -> None:
        """Close every node and bastion connection (nodes first). The pool stays usable."""
        conns = list(self._conns.values())
        self._conns.clear()
        for conn in reversed(conns):  # nodes were stored after the bastions they tunnel through
            conn.close()
        await asyncio.gather(
            *(asyncio.wait_for(conn.wait_closed(), 5.0) for conn in conns), return_exceptions=True
        )

    async def __aenter__(self) -> RemotePool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class _Exchange:
    """One command on one channel: open, feed stdin, drain both streams, collect the status.

    The node runs ``PDWIZARD_RUN_ID=<random>; export PDWIZARD_RUN_ID; <command>``
    so a timed-out command and everything it started can be found and killed.
    Output is accumulated as it arrives so a timed-out command still reports
    what it printed before it was killed.
    """

    def __init__(
        self, conn: asyncssh.SSHClientConnection, target: SshTarget, command: str, stdin: str | None
    ) -> None:
        self.conn, self.target, self.command, self.stdin = conn, target, command, stdin
        self.run_id = uuid.uuid4().hex
        self.process: asyncssh.SSHClientProcess[bytes] | None = None
        self.out = bytearray()
        self.err = bytearray()

    @property
    def wire_command(self) -> str:
        return f"{RUN_ID_VAR}={self.run_id}; export {RUN_ID_VAR}; {self.command}"

    async def communicate(self) -> None:
        self.process = await self._open()
        try:
            if self.stdin is not None:
                self.process.stdin.write(self.stdin.encode("utf-8"))
            self.process.stdin.write_eof()
            await asyncio.gather(_drain(self.process.stdout, self.out), _drain(self.process.stderr, self.err))
            await self.process.wait_closed()
        except (asyncssh.Error, OSError) as exc:
            raise failures.command_disconnected(self.target, self.command, str(exc) or type(exc).__name__)
        if self.process.exit_status is None and self.conn.is_closed():
            raise failures.command_disconnected(self.target, self.command, "no exit status")

    async def _open(self) -> asyncssh.SSHClientProcess[bytes]:
        try:
            return await _open_session(self.conn, self.wire_command)
        except asyncssh.ChannelOpenError as exc:
            raise failures.session_refused(self.target, self.command, exc) from None

    def signal_kill(self) -> None:
        """SSH "signal" request: sshd kills the process group (refused for root by OpenSSH)."""
        if self.process is not None:
            with contextlib.suppress(Exception):
                self.process.send_signal("KILL")

    async def kill_by_run_id(self) -> bool:
        """Kill every process carrying this run id, from a second session on the same connection."""
        script = _KILL_SCRIPT.format(needle=shlex.quote(f"{RUN_ID_VAR}={self.run_id}"))
        try:
            killer = await asyncio.wait_for(_open_session(self.conn, script), _KILL_TIMEOUT_S)
            done = await killer.wait(timeout=_KILL_TIMEOUT_S)
        except (_NotStarted, asyncssh.Error, OSError, asyncio.TimeoutError, TimeoutError) as exc:
            log.warning("could not kill timed-out command on %s: %s", self.target.name, exc)
            return False
        log.debug("killed on %s: pids %s", self.target.name, done.stdout.decode().split() or "none left")
        return done.exit_status == 0

    async def close(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            self.process.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait_closed(), _KILL_GRACE_S)

    def result(self, duration: float, *, timed_out: bool = False) -> CommandResult:
        status, signame = _exit_of(self.process, timed_out)
        return CommandResult(
            node=self.target.name,
            command=self.command,
            stdout=self.out.decode("utf-8", errors="replace"),
            stderr=self.err.decode("utf-8", errors="replace"),
            exit_status=status,
            duration_s=duration,
            stdin=self.stdin,
            exit_signal=signame,
            timed_out=timed_out,
        )


async def _open_session(conn: asyncssh.SSHClientConnection, command: str) -> asyncssh.SSHClientProcess[bytes]:
    """Open a session channel, retrying briefly while sshd is at MaxSessions.

    sshd frees a finished session a little after the client sees it closed, so a
    burst of commands can be refused ("no more sessions") although fewer than
    MaxSessions are running. The command has not started then: retrying is safe.
    Raises _NotStarted when the connection is gone, ChannelOpenError when refusals persist.
    """
    delay = _OPEN_RETRY_FIRST_S
    for attempt in range(_OPEN_ATTEMPTS):
        if conn.is_closed():
            raise _NotStarted("connection already closed")
        try:
            return await conn.create_process(command, encoding=None)
        except asyncssh.ChannelOpenError as exc:
            if conn.is_closed():
                raise _NotStarted(exc.reason) from None
            if attempt == _OPEN_ATTEMPTS - 1:
                raise
            log.debug("session refused (%s); retrying in %.2f s", exc.reason, delay)
        except (asyncssh.Error, OSError) as exc:
            raise _NotStarted(str(exc) or type(exc).__name__) from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, _OPEN_RETRY_MAX_S)
    raise AssertionError("unreachable")


async def _drain(stream: asyncssh.SSHReader[bytes], sink: bytearray) -> None:
    while chunk := await stream.read(65536):
        sink.extend(chunk)


async def _drain_tail(stream: asyncssh.SSHReader[bytes], sink: bytearray, keep: int) -> None:
    """Like _drain, keeping only the last `keep` bytes."""
    with contextlib.suppress(asyncssh.Error, OSError):
        while chunk := await stream.read(65536):
            sink.extend(chunk)
            if len(sink) > keep:
                del sink[: len(sink) - keep]


def _pieces(buf: bytearray, start: int, end: int, max_line: int) -> list[str]:
    """buf[start:end] as one decoded line, or several of at most max_line bytes."""
    if end - start <= max_line:
        return [buf[start:end].decode("utf-8", errors="replace")]
    return [buf[i:min(i + max_line, end)].decode("utf-8", errors="replace") for i in range(start, end, max_line)]


def _exit_of(process: asyncssh.SSHClientProcess[bytes] | None, timed_out: bool) -> tuple[int, str | None]:
    """(exit status, signal name): 128+N for a signal like a shell reports it, -1 for none."""
    if process is None or timed_out:
        return -1, None
    if process.exit_signal:
        name = process.exit_signal[0]
        try:
            return 128 + signal.Signals[f"SIG{name}"].value, name
        except KeyError:
            return 255, name
    status = process.exit_status
    return (status, None) if status is not None and status >= 0 else (-1, None)


def _index_targets(targets: Sequence[SshTarget]) -> dict[str, SshTarget]:
    """Names are how callers address nodes and how errors name them: they must be unique."""
    index: dict[str, SshTarget] = {}
    for target in targets:
        if not isinstance(target, SshTarget):
            raise ValueError(f"RemotePool needs SshTarget values, got {type(target).__name__}")
        if target.name in index:
            raise ValueError(f"two targets are named {target.name!r}; node names must be unique")
        index[target.name] = target
    return index


def _hops(target: SshTarget) -> list[SshTarget]:
    """Outermost bastion first, the node last."""
    chain: list[SshTarget] = []
    hop: SshTarget | None = target
    while hop is not None:
        chain.append(hop)
        hop = hop.jump
    return chain[::-1]


def _known_hosts(target: SshTarget) -> asyncssh.SSHKnownHosts:
    path = known_hosts_path(target)
    try:
        return load_known_hosts(path)
    except OSError as exc:
        raise RemoteError(
            target.name,
            "host_key_unknown",
            f"cannot read known_hosts file {path}: {exc.strerror or exc}; host keys cannot be verified",
            hint="fix its permissions or point known_hosts at a readable file",
        ) from None


def _record_failed(target: SshTarget, exc: OSError) -> RemoteError:
    path = known_hosts_path(target)
    return RemoteError(
        target.name,
        "host_key_unknown",
        f"cannot record the host key of {target.display} in {path}: {exc.strerror or exc}",
        hint="make the known_hosts file and its directory writable, or add the line by hand",
    )


def _auth_options(target: SshTarget) -> dict[str, Any]:
    """Public-key only. With identity_file, exactly that key (no agent), so the hint is true."""
    options: dict[str, Any] = {
        "password_auth": False,
        "kbdint_auth": False,
        "gss_auth": False,
        "gss_kex": False,
        "preferred_auth": "publickey",
    }
    if target.user:
        options["username"] = target.user
    if target.identity_file:
        path = os.path.expanduser(target.identity_file)
        try:
            options["client_keys"] = asyncssh.load_keypairs(path)
        except (OSError, asyncssh.KeyImportError, ValueError) as exc:
            raise failures.key_unusable(target, exc) from None
        options["agent_path"] = None
    return options


def _tunnel_kw(tunnel: asyncssh.SSHClientConnection | None) -> dict[str, Any]:
    return {"tunnel": tunnel} if tunnel is not None else {}


def _mapped(target: SshTarget, exc: BaseException) -> BaseException:
    """The operator-facing error for a connect failure, or the exception itself if it is a bug."""
    if isinstance(exc, RemoteError):
        return exc
    return failures.connect_failed(target, exc) or exc

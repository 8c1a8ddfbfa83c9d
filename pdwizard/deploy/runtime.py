"""Where the deployment's processes run on a node: the host, or an existing container.

Operators run vllm-ascend inside its image, so `[stack] container = "name"` runs every
deployment command *inside* that container with `docker exec`: the launch script, the
per-round liveness checks, stop, status and the log tails. Decision: `docker exec -i NAME sh -s`
running the very same POSIX scripts as on the host, rather than `docker exec -d` (which reports
no pid). Consequences, all deliberate:

- the run directory is `~/.pdwizard/runs/<session>/` of the *container's* $HOME, and the pid
  files hold pids of the container's pid namespace; every later command (stop, status, logs)
  goes through the same `docker exec`, so they always see the same files and pids;
- processes are detached with `setsid` inside the container and survive the exec session (the
  container's pid 1 inherits them); they live as long as the container does;
- the ranktable is uploaded inside the container too (`launch(..., ranktable=...)`), since the
  `~/` of DISAGGREGATED_PREFILL_RANK_TABLE_PATH is resolved there;
- `PDWIZARD_RUN_ID` is passed into the container (`-e`), so a command that times out (or a log
  tail that is closed) is found and killed by RemotePool's kill-by-run-id from the host, which
  sees container processes in its /proc.

The container must be running; `docker` must be usable by the SSH user (root or the docker group).
Health checks still go from this machine to the node's address: the guide runs the image with
`--net=host`; with published ports, publish the same port numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from pdwizard.models import Session
from pdwizard.remote.pool import RUN_ID_VAR, STREAM_MAX_LINE, CommandResult, RemotePool

# `sh -c` so the node's shell expands PDWIZARD_RUN_ID (set by RemotePool for every command)
# into the docker argument; "$0" is the container, "$@" the command to run in it.
_DOCKER_EXEC = 'exec docker exec {flags}-e "{var}=${var}" "$0" "$@"'


@dataclass(frozen=True)
class Runtime:
    """The host (container None) or `docker exec` into `container`."""

    container: str | None = None

    @property
    def describe(self) -> str:
        return "host" if self.container is None else f"container {self.container} (docker exec)"

    def argv(self, argv: Sequence[str], *, stdin: bool = False) -> list[str]:
        """The node-side argv that runs `argv` in this runtime (stdin kept open with stdin=True)."""
        args = list(argv)
        if self.container is None:
            return args
        flags = "-i " if stdin else ""
        return ["sh", "-c", _DOCKER_EXEC.format(flags=flags, var=RUN_ID_VAR), self.container, *args]

    def script_argv(self) -> list[str]:
        """The argv that runs a POSIX sh script fed on stdin."""
        return self.argv(["sh", "-s"], stdin=True)

    async def run_script(self, pool: RemotePool, node: str, script: str, *, timeout: float) -> CommandResult:
        """One round trip: `script` through `sh -s` in this runtime."""
        return await pool.run(node, self.script_argv(), timeout=timeout, stdin=script)

    def stream(self, pool: RemotePool, node: str, argv: Sequence[str], *,
               max_line: int = STREAM_MAX_LINE) -> AsyncIterator[str]:
        """Stdout lines of a long-running command in this runtime (see RemotePool.stream)."""
        return pool.stream(node, self.argv(argv), max_line=max_line)


def runtime_for(session: Session) -> Runtime:
    """The session's runtime: `[stack] container`, else the host."""
    return Runtime(session.stack.container)


__all__ = ["Runtime", "runtime_for"]

"""Batched probes: many tool calls on one node in one SSH round trip.

The guide runs every `hccn_tool` call as its own command, node after node. Here a
node gets one POSIX `sh` script that runs its calls one after another (concurrent
`hccn_tool` calls on one host answer "busy"), retries "busy" with back-off, and
frames each call's stdout, stderr and exit status with a per-run nonce so the
output can be split back without ever inferring a device from line order.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from pdwizard.remote.quoting import join_argv

#: Where the driver installs the tools when they are not on PATH.
HCCN_TOOL_FALLBACK = "/usr/local/Ascend/driver/tools/hccn_tool"
NPU_SMI_FALLBACK = "/usr/local/sbin/npu-smi"

#: Attempts for a call that answers "busy, please try again" (hccn_tool exit 11).
BUSY_ATTEMPTS = 5

_PRELUDE = """\
set +e
umask 077
PDW_T=$(mktemp -d 2>/dev/null || echo /tmp/pdw.$$)
mkdir -p "$PDW_T"
trap 'rm -rf "$PDW_T"' EXIT
HCCN_TOOL=$(command -v hccn_tool 2>/dev/null || echo {hccn})
NPU_SMI=$(command -v npu-smi 2>/dev/null || echo {npusmi})
pdw_call() {{
  pdw_key=$1; shift
  pdw_n=0
  while :; do
    pdw_n=$((pdw_n + 1))
    pdw_o=$("$@" 2>"$PDW_T/e" </dev/null)
    pdw_rc=$?
    case $pdw_o in *[Bb]"usy, please try again"*) pdw_busy=1 ;; *) pdw_busy= ;; esac
    if [ -z "$pdw_busy" ] && [ -s "$PDW_T/e" ] && grep -qi 'busy, please try again' "$PDW_T/e"; then
      pdw_busy=1
    fi
    if [ "$pdw_rc" -ne 0 ] && [ -n "$pdw_busy" ] && [ "$pdw_n" -lt {attempts} ]; then
      sleep "0.$pdw_n"
      continue
    fi
    break
  done
  printf '@@PDW {nonce} begin %s\n%s\n@@PDW {nonce} stderr\n' "$pdw_key" "$pdw_o"
  if [ -s "$PDW_T/e" ]; then cat "$PDW_T/e"; fi
  printf '\n@@PDW {nonce} end %s %s\n' "$pdw_rc" "$pdw_n"
}}
"""


@dataclass(frozen=True)
class ToolCall:
    """One command to run inside a batch; `key` names its result.

    argv[0] of ``hccn_tool`` or ``npu-smi`` is resolved on the node (PATH, then the
    driver's install path). ``raw_shell`` is for the few probes that need a pipe
    (already quoted by the caller); everything else is an argv list.
    """

    key: str
    argv: tuple[str, ...] = ()
    raw_shell: str | None = None


@dataclass
class ToolOutput:
    """What one call printed: streams kept apart because failures differ by stream."""

    stdout: str
    stderr: str
    exit_status: int
    attempts: int = 1

    @property
    def text(self) -> str:
        """Both streams, for showing the raw output behind a verdict."""
        parts = [self.stdout.rstrip("\n")]
        if self.stderr.strip():
            parts.append(f"[stderr] {self.stderr.rstrip()}")
        return "\n".join(p for p in parts if p)


@dataclass
class Batch:
    """A node's script body: one framed call per line, plus raw shell loops.

    Raw lines exist for the few probes that must expand on the node (a path from
    the node's environment, a device list read from an earlier call's output).
    """

    lines: list[str] = field(default_factory=list)

    def add(self, key: str, *argv: str) -> None:
        """Frame one command given as an argv list (every element quoted)."""
        self.add_call(ToolCall(key, tuple(argv)))

    def add_call(self, call: ToolCall) -> None:
        if not _KEY_RE.match(call.key):
            raise ValueError(f"probe key {call.key!r} must be a simple token")
        self.lines.append(f"pdw_call {call.key} {_command_text(call)}")

    def add_raw(self, text: str) -> None:
        """Append shell text as is; the caller owns its quoting."""
        self.lines.append(text)


def new_nonce() -> str:
    """A marker no tool prints, so framing lines cannot collide with output."""
    return secrets.token_hex(6)


_KEY_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")


def _command_text(call: ToolCall) -> str:
    if call.raw_shell is not None:
        return f"sh -c {join_argv([call.raw_shell])}"
    head, *rest = call.argv
    tool = {"hccn_tool": '"$HCCN_TOOL"', "npu-smi": '"$NPU_SMI"'}.get(head)
    if tool is None:
        return join_argv(call.argv)
    return " ".join([tool, join_argv(rest)]) if rest else tool


def build_script(batch: Batch | Iterable[ToolCall], nonce: str) -> str:
    """Render the script for one node, prelude first."""
    if not isinstance(batch, Batch):
        calls, batch = list(batch), Batch()
        for call in calls:
            batch.add_call(call)
    prelude = _PRELUDE.format(hccn=HCCN_TOOL_FALLBACK, npusmi=NPU_SMI_FALLBACK,
                              attempts=BUSY_ATTEMPTS, nonce=nonce)
    return prelude + "\n".join(batch.lines) + "\n"


def split_output(text: str, nonce: str) -> dict[str, ToolOutput]:
    """Split a batch's stdout back into one ToolOutput per key.

    A call whose frame is cut off (the script was killed) is simply absent: the
    caller reports it as "no output", never as a pass.
    """
    begin, mid, end = (f"@@PDW {nonce} {w}" for w in ("begin ", "stderr", "end "))
    results: dict[str, ToolOutput] = {}
    key: str | None = None
    out: list[str] = []
    err: list[str] = []
    target = out
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(begin):
            key, out, err = line[len(begin):].strip(), [], []
            target = out
        elif key is not None and line == mid:
            target = err
        elif key is not None and line.startswith(end):
            rc, attempts = _parse_end(line[len(end):])
            results[key] = ToolOutput(_join(out), _join(err), rc, attempts)
            key = None
        elif key is not None:
            target.append(line)
    return results


def _parse_end(tail: str) -> tuple[int, int]:
    parts = tail.split()
    rc = int(parts[0]) if parts and parts[0].lstrip("-").isdigit() else -1
    attempts = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 1
    return rc, attempts


def _join(lines: Sequence[str]) -> str:
    # Every stream gets one extra "echo" newline in the frame: drop it.
    body = list(lines)
    if body and body[-1] == "":
        body.pop()
    return "\n".join(body) + ("\n" if body else "")

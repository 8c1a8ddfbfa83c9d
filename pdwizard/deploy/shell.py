"""POSIX sh building blocks shared by the launch, poll, stop and status scripts.

Every script runs as one `sh -s` round trip (through `Runtime.run_script`), on the host or
inside the container, and must work under dash. Results come back framed like the batched
probes (`@@PDW <nonce> begin <key>` ... `end <status>`), so `pdwizard.probe.split_output`
reads them.

Liveness is judged from /proc, not `kill -0`: a process that exited but was never reaped
(orphans of a pid 1 that does not reap, e.g. `sleep infinity` in a container) is a zombie,
and `kill -0` calls it alive. Without /proc the functions fall back to `kill -0`.
"""

from __future__ import annotations

import shlex

from pdwizard.probe import new_nonce

#: The first line pdwizard appends to a process log at each launch; "this launch's lines" are
#: the lines after the last one (so appended logs keep their history).
LOG_HEADER = "=== pdwizard launch "

#: Environment variables every launched process (and all it starts) carries.
SESSION_ENV = "PDWIZARD_SESSION"  # the run dir's path ($HOME expanded): what `stop` sweeps
PROCESS_ENV = "PDWIZARD_PROCESS"  # the process name, for people reading `ps e`

# Functions only: nothing runs until called. `set -f` (no globbing of unquoted words) is the
# caller's; the /proc globs below are written where globbing is wanted and re-enable it locally.
PRELUDE = r"""
pdw_nap() { sleep 0.1 2>/dev/null || sleep 1; }
pdw_until() {
  [ "$2" -gt 0 ] || return 0
  [ "$(date +%s)" -lt "$1" ]
}
pdw_alive() {
  case $1 in ''|*[!0-9]*) return 1 ;; esac
  if [ -d /proc/self ]; then
    { read -r pdw_l < "/proc/$1/stat"; } 2>/dev/null || return 1
    pdw_l=${pdw_l##*) }
    case $pdw_l in Z*|X*|x*) return 1 ;; esac
    return 0
  fi
  kill -0 "$1" 2>/dev/null
}
pdw_snap() {
  pdw_snap=
  [ -d /proc/self ] || return 0
  set +f
  for pdw_f in /proc/[0-9]*/stat; do
    { read -r pdw_l < "$pdw_f"; } 2>/dev/null || continue
    pdw_l=${pdw_l##*) }
    case $pdw_l in Z*|X*|x*) continue ;; esac
    pdw_l=${pdw_l#* }
    pdw_l=${pdw_l#* }
    pdw_p=${pdw_f#/proc/}
    pdw_snap="$pdw_snap ${pdw_p%/stat}:${pdw_l%% *}"
  done
  set -f
}
pdw_group() {
  pdw_out=
  if [ -d /proc/self ]; then
    for pdw_e in $pdw_snap; do
      [ "${pdw_e#*:}" = "$1" ] && pdw_out="$pdw_out ${pdw_e%:*}"
    done
  elif kill -0 -"$1" 2>/dev/null; then
    pdw_out=" $1"
  fi
  echo $pdw_out
}
pdw_pgrp() {
  for pdw_e in $pdw_snap; do
    [ "${pdw_e%:*}" = "$1" ] && { echo "${pdw_e#*:}"; return 0; }
  done
  return 1
}
pdw_marked() {
  [ -d /proc/self ] || { echo; return 0; }
  set +f
  pdw_m=$(grep -lzxF -e "$1" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3)
  set -f
  pdw_out=
  for pdw_p in $pdw_m; do
    [ "$pdw_p" = "$$" ] && continue
    pdw_alive "$pdw_p" && pdw_out="$pdw_out $pdw_p"
  done
  echo $pdw_out
}
pdw_tail() {
  [ -f "$1" ] || return 0
  pdw_n=$(grep -n '^=== pdwizard launch ' "$1" 2>/dev/null | tail -n 1 | cut -d: -f1)
  tail -n "+$(( ${pdw_n:-0} + 1 ))" "$1" | tail -n "$2"
}
pdw_frame() {
  printf '@@PDW %s begin %s\n' "$PDW_N" "$1"
}
pdw_end() {
  printf '\n@@PDW %s stderr\n\n@@PDW %s end %s 1\n' "$PDW_N" "$PDW_N" "${1:-0}"
}
pdw_kv() {
  pdw_frame "$1"
  printf '%s' "$2"
  pdw_end 0
}
"""


def quote(value: str) -> str:
    """One shell word for any text (single-quoted unless plain)."""
    return shlex.quote(value)


def home_path(relative: str) -> str:
    """A path under the node's $HOME as a shell word: "$HOME"/'relative'."""
    return '"$HOME"/' + shlex.quote(relative.lstrip("/"))


def heredoc_install(target: str, text: str, *, mode: str = "644", nonce: str | None = None) -> str:
    """Shell text that writes `text` byte for byte to `target` (a shell word) atomically.

    Temp file next to the target, `head -c` to drop the newline a heredoc always ends with,
    chmod, then rename over the target: a reader sees the old file or the new, never half.
    """
    nonce = nonce or new_nonce()
    delim = f"PDW_EOF_{nonce}"
    if "\x00" in text or delim in text.splitlines():
        raise ValueError("the file text contains a NUL byte or the heredoc delimiter")
    size = len(text.encode("utf-8"))
    body = text if text.endswith("\n") or not text else text + "\n"
    tmp = f"{target}.pdw-{nonce}.tmp"
    return (
        f"head -c {size} > {tmp} <<'{delim}' || exit 5\n"
        f"{body}{delim}\n"
        f"chmod {mode} {tmp} && mv -f {tmp} {target} || {{ rm -f {tmp}; exit 5; }}\n"
    )


__all__ = ["LOG_HEADER", "PRELUDE", "PROCESS_ENV", "SESSION_ENV", "heredoc_install", "home_path", "quote"]

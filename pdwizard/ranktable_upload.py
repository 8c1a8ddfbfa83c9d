"""Push one ranktable to every node that runs an instance, and prove they all hold it.

A mismatched ranktable between nodes fails only later, at link time, with
`Create Dest error` (operator-pain-points.md #7). So: generate it once
(`pdwizard.ranktable`), write the same bytes everywhere, read each copy back and
report its sha256, so the caller can confirm identical hashes on every node.

Per node, one round trip (one `sh -s` script through `RemotePool.run_script`), nodes
in parallel. The script writes a temp file in the target's directory and renames it
over the target, so a reader (a vLLM worker starting) sees the old file or the new,
never a partial one. The previous file is kept as `<path>.bak-<UTC time>` only when
its content differs; an identical upload changes nothing and reports `changed=False`.

Nodes may share the target (a path on NFS): every step tolerates a concurrent writer
of the same text. Temp names carry a per-node nonce, backup names are claimed
atomically (`set -C`), and the rename is atomic, so the file always ends up whole;
more than one node may then report `changed` and keep its own backup of the old file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
import shlex
from dataclasses import dataclass

from pdwizard.errors import InputError, RemoteError
from pdwizard.models import Session
from pdwizard.remote.pool import RemotePool

#: Where the ranktable goes when `[stack] ranktable_path` is not set; `~` is the node's
#: $HOME (of the SSH user), expanded on the node.
DEFAULT_RANKTABLE_PATH = "~/.pdwizard/runs/{session}/ranktable.json"


def ranktable_path(session: Session) -> str:
    """The path the launch commands reference (`DISAGGREGATED_PREFILL_RANK_TABLE_PATH`).

    `[stack] ranktable_path` if set, else `~/.pdwizard/runs/<session name>/ranktable.json`.
    Read defensively: the session model may not have the key yet.
    """
    stack = getattr(session, "stack", None)
    configured = getattr(stack, "ranktable_path", None) if stack is not None else None
    return configured or DEFAULT_RANKTABLE_PATH.format(session=session.name)


def _path_expr(path: str) -> str:
    """`path` as a shell word that expands to the absolute path on the node.

    `~/x` and relative paths are relative to the node's $HOME (an SSH command starts
    there, but saying so makes it independent of the cwd); the rest is single-quoted,
    so spaces, quotes, `$` and globs stay literal.
    """
    if not path or "\x00" in path or "\n" in path:
        raise InputError("the ranktable path must be a non-empty path on one line", key="stack.ranktable_path",
                         hint='for example ranktable_path = "/etc/pdwizard/ranktable.json"')
    if path in ("~", ".", "..") or path.endswith(("/", "/.", "/..")):
        raise InputError(f"the ranktable path {path!r} names a directory, not a file", key="stack.ranktable_path",
                         hint='end it with the file name, e.g. "/etc/pdwizard/ranktable.json"')
    if path.startswith("~") and not path.startswith("~/"):
        raise InputError(f"the ranktable path {path!r} uses ~user, which is not supported",
                         key="stack.ranktable_path",
                         hint="give an absolute path, or one under the SSH user's home as ~/...")
    if path.startswith("/"):
        return shlex.quote(path)
    return '"$HOME"/' + shlex.quote(path.removeprefix("~/").lstrip("/"))


@dataclass(frozen=True)
class UploadResult:
    """What one node holds after the upload."""

    node: str
    expected_sha256: str  # of the text sent
    path: str | None = None  # absolute path on the node ($HOME and symlinks resolved)
    changed: bool = False  # False: the file already held exactly this text, nothing was touched
    sha256: str | None = None  # of the file on the node afterwards, read back by the same script
    backup: str | None = None  # the previous (different) file's copy, if there was one
    error: str | None = None  # why it failed on this node (its stderr, or the connection error)

    @property
    def ok(self) -> bool:
        """Written (or already there) and what the node holds is exactly what was sent."""
        return self.error is None and self.sha256 == self.expected_sha256


def upload_script(path: str, text: str, *, nonce: str, stamp: str) -> str:
    """The `sh -s` script that installs `text` at `path` on one node (see module doc).

    The text travels in a heredoc whose quoted delimiter carries a random nonce and is
    checked not to be a line of the text; a heredoc always ends with a newline, the
    generator's file never does, so exactly len(bytes) bytes are kept (`head -c`).
    Output lines: `@@PDW <nonce> key=value` for path, changed, backup, sha256.
    """
    data = text.encode("utf-8")
    delim = f"PDW_RANKTABLE_{nonce}"
    if "\x00" in text or delim in text.splitlines():
        raise ValueError("the ranktable text contains a NUL byte or the heredoc delimiter")
    tag = f"@@PDW {nonce}"
    return f"""set -u
umask 022
p={_path_expr(path)}
if [ -L "$p" ]; then p=$(readlink -f -- "$p") || exit 3; fi
case $p in */*) d=${{p%/*}} ;; *) d=. ;; esac
[ -n "$d" ] || d=/
mkdir -p -- "$d" || exit 3
t=$d/.${{p##*/}}.pdw-{nonce}.tmp
trap 'rm -f -- "$t"' EXIT
trap 'exit 1' HUP INT TERM
head -c {len(data)} > "$t" <<'{delim}' || exit 4
{text}
{delim}
sync -- "$t" 2>/dev/null || :
n=$(sha256sum < "$t") || exit 5
o=
if [ -f "$p" ]; then o=$(sha256sum < "$p") || exit 5; fi
b=
if [ "${{o%% *}}" = "${{n%% *}}" ]; then
  rm -f -- "$t"
  c=0
else
  if [ -e "$p" ]; then
    b=$p.bak-{stamp}; i=1
    until (set -C; : > "$b") 2>/dev/null; do
      [ $i -le 99 ] || {{ echo "cannot create a backup file next to $p" >&2; exit 6; }}
      b=$p.bak-{stamp}.$i; i=$((i + 1))
    done
    cp -p -- "$p" "$b" || exit 6
  fi
  mv -f -- "$t" "$p" || exit 7
  c=1
fi
s=$(sha256sum < "$p") || exit 5
printf '%s\\n' "{tag} path=$p" "{tag} changed=$c" "{tag} backup=$b" "{tag} sha256=${{s%% *}}"
"""


def _parse(node: str, expected: str, stdout: str, nonce: str) -> UploadResult:
    tag = f"@@PDW {nonce} "
    values: dict[str, str] = {}
    for line in stdout.splitlines():
        if line.startswith(tag):
            key, _, value = line[len(tag):].partition("=")
            values[key] = value
    return UploadResult(
        node=node, expected_sha256=expected, path=values.get("path") or None,
        changed=values.get("changed") == "1", sha256=values.get("sha256") or None,
        backup=values.get("backup") or None,
        error=None if "sha256" in values else "the upload script printed no result",
    )


async def _upload_one(pool: RemotePool, node: str, path: str, text: str, expected: str,
                      stamp: str, timeout: float) -> UploadResult:
    nonce = secrets.token_hex(8)
    script = upload_script(path, text, nonce=nonce, stamp=stamp)
    try:
        result = await pool.run_script(node, script, timeout=timeout)
    except RemoteError as exc:
        return UploadResult(node=node, expected_sha256=expected, error=str(exc))
    if result.exit_status != 0:
        detail = result.stderr.strip() or f"exit status {result.exit_status}"
        return UploadResult(node=node, expected_sha256=expected,
                            error=f"node {node}: cannot write the ranktable at {path}: {detail}")
    return _parse(node, expected, result.stdout, nonce)


async def upload_ranktable(pool: RemotePool, session: Session, text: str,
                           path: str | None = None) -> dict[str, UploadResult]:
    """Install `text` at `path` (default: `ranktable_path(session)`) on every node that
    runs an instance, in parallel, one round trip each; results in session node order.

    A node that fails (unreachable, permission denied, disk full) gets a result with
    `error` set; the others are still written. Check `all(r.ok for r in ...)`: `ok`
    means the node read back exactly the sha256 of `text`.
    """
    target = path if path is not None else ranktable_path(session)
    _path_expr(target)  # refuse a bad path before touching any node
    expected = hashlib.sha256(text.encode("utf-8")).hexdigest()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    used = {inst.node for inst in session.instances}
    nodes = [n.name for n in session.nodes if n.name in used]
    timeout = float(session.ssh.command_timeout)
    results = await asyncio.gather(*(
        _upload_one(pool, n, target, text, expected, stamp, timeout) for n in nodes))
    return dict(zip(nodes, results))


__all__ = ["DEFAULT_RANKTABLE_PATH", "UploadResult", "ranktable_path", "upload_ranktable", "upload_script"]

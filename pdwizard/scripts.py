"""Runnable launch scripts: `DIR/<node>-<role>-<n>.sh` per instance and `DIR/proxy.sh`.

Each script is bash: `set -euo pipefail`, the environment as `export NAME=VALUE` lines in
the rendered order, then `exec` of the rendered argv. Every value is shell-quoted
(`shlex.quote` / `join_argv`), so a model path with spaces, quotes or `$(...)` stays one
argument and the JSON blobs reach vLLM byte for byte. The one expansion is deliberate: an
environment value that starts with `~/` (the default ranktable path) is written as
`"$HOME"/'...'`, so it resolves to the home directory of whoever runs the script on the node.

What pdwizard adds to the guide's commands is preceded by a comment line saying why; the
render notes (keys without effect, warnings) are listed in the header. Files are written
atomically with mode 0755.
"""

from __future__ import annotations

import os
import shlex
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pdwizard import __version__
from pdwizard.errors import PdwError
from pdwizard.fsutil import atomic_write_text
from pdwizard.models import Session
from pdwizard.remote.quoting import join_argv
from pdwizard.render import RenderedDeployment, RenderedInstance, RenderedProxy, render_all

SCRIPT_MODE = 0o755
_WIDTH = 100


@dataclass(frozen=True)
class WrittenScripts:
    """What write_scripts wrote: one path per instance (session order), then the proxy's."""

    directory: Path
    instances: list[Path]
    proxy: Path
    deployment: RenderedDeployment

    @property
    def paths(self) -> list[Path]:
        return [*self.instances, self.proxy]


def shell_value(value: str) -> str:
    """One environment value as shell text: quoted; a leading `~/` becomes "$HOME"/."""
    if value.startswith("~/"):
        return '"$HOME"/' + shlex.quote(value[2:])
    return shlex.quote(value)


def instance_script(r: RenderedInstance, *, session_name: str = "", profile: str = "") -> str:
    """The bash script that launches one rendered instance."""
    title = (f"{r.role} instance {r.ordinal} on node {r.node} (session instances[{r.index}]"
             f"{f' of {session_name!r}' if session_name else ''})")
    head = [
        f"pdwizard {__version__}: {title}.",
        f"Profile {r.profile}, connector {r.connector}{f' ({profile})' if profile else ''}.",
        f"Run it on node {r.node}. Generated: change the session and render again rather than editing.",
    ]
    return _script(head, r.notes, r.env, r.argv, r.comments)


def proxy_script(r: RenderedProxy, *, session_name: str = "") -> str:
    """The bash script that launches the PD proxy."""
    kind = "vllm-ascend's example proxy" if r.kind == "upstream" else "pdwizard's proxy"
    head = [
        f"pdwizard {__version__}: the PD proxy ({kind}){f' of session {session_name!r}' if session_name else ''}.",
        f"Run it on node {r.node}. Generated: change the session and render again rather than editing.",
    ]
    return _script(head, r.notes, r.env, r.argv, r.comments)


def script_texts(deployment: RenderedDeployment, *, session_name: str = "") -> dict[str, str]:
    """File name -> script text for every instance, then proxy.sh."""
    describe = deployment.connector.kv_connector
    out = {
        r.script_name: instance_script(r, session_name=session_name, profile=describe)
        for r in deployment.instances
    }
    out[deployment.proxy.script_name] = proxy_script(deployment.proxy, session_name=session_name)
    return out


def write_scripts(
    session: Session,
    directory: str | os.PathLike[str],
    *,
    node_ips: Mapping[str, str] | None = None,
    nics: Mapping[str, str] | None = None,
    ranktable_path: str | None = None,
    npus_per_node: Mapping[str, int] | None = None,
    model_mla: bool | None = None,
    source: str | None = None,
) -> WrittenScripts:
    """Render the whole deployment and write its scripts into `directory` (created if needed).

    Renders everything first: on any render problem it raises SessionError (an InputError,
    exit code 2) listing them all and writes nothing. PdwError if a file cannot be written.
    Scripts of instances no longer in the session are not removed.
    """
    deployment = render_all(session, node_ips=node_ips, nics=nics, ranktable_path=ranktable_path,
                            npus_per_node=npus_per_node, model_mla=model_mla, source=source)
    return write_deployment(deployment, directory, session_name=session.name)


def write_deployment(deployment: RenderedDeployment, directory: str | os.PathLike[str], *,
                     session_name: str = "") -> WrittenScripts:
    """Write an already rendered deployment's scripts (the replay renders once, then writes)."""
    texts = script_texts(deployment, session_name=session_name)
    out = Path(directory)
    written: dict[str, Path] = {}
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            written[name] = atomic_write_text(out / name, text, mode=SCRIPT_MODE)
    except OSError as exc:
        raise PdwError(f"{out}: cannot write the launch scripts: {exc.strerror or exc}",
                       hint="check that the directory is writable") from exc
    return WrittenScripts(
        directory=out,
        instances=[written[r.script_name] for r in deployment.instances],
        proxy=written[deployment.proxy.script_name],
        deployment=deployment,
    )


# ---------------------------------------------------------------------------------------


def _comment(text: str, indent: str = "") -> list[str]:
    """Comment lines for any text: no character of it can end the comment early."""
    clean = "".join(c if c >= " " or c == "\n" else "?" for c in text.replace("\r", "\n"))
    lines: list[str] = []
    for para in clean.split("\n"):
        lines.extend(textwrap.wrap(para, _WIDTH - 2 - len(indent), break_on_hyphens=False) or [""])
    return [f"{indent}# {ln}".rstrip() for ln in lines]


def _script(head: list[str], notes: list[str], env: list[tuple[str, str]], argv: list[str],
            comments: Mapping[str, str]) -> str:
    lines = ["#!/usr/bin/env bash"]
    for h in head:
        lines.extend(_comment(h))
    if notes:
        lines.append("#")
        lines.append("# Notes:")
        for n in notes:
            wrapped = _comment(n, indent="")
            lines.append("#   - " + wrapped[0][2:])
            lines.extend("#     " + w[2:] for w in wrapped[1:])
    lines += ["set -euo pipefail", ""]
    for name, value in env:
        if not name.isidentifier() or not name.isascii():
            raise ValueError(f"not an environment variable name: {name!r}")
        if name in comments:
            lines.extend(_comment(f"pdwizard adds {name}: {comments[name]}"))
        join_argv([value])  # the same checks as an argument: no NUL, valid UTF-8
        lines.append(f"export {name}={shell_value(value)}")
    if env:
        lines.append("")
    for flag, why in comments.items():
        if flag.startswith("--") and flag in argv:
            lines.extend(_comment(f"{flag}: {why}"))
    groups: list[list[str]] = [[]]
    for arg in argv:
        if arg.startswith("--") and groups[-1]:
            groups.append([])
        groups[-1].append(arg)
    cmd = ["exec " + join_argv(groups[0])] + ["  " + join_argv(g) for g in groups[1:]]
    lines.append(" \\\n".join(cmd))
    return "\n".join(lines) + "\n"


__all__ = [
    "SCRIPT_MODE",
    "WrittenScripts",
    "instance_script",
    "proxy_script",
    "script_texts",
    "shell_value",
    "write_scripts",
]

"""What a run produces from the session and discovery: the ranktable and the scripts.

Built once the nodes are discovered, written under `--out` for preview (also with
`--dry-run`), and the ranktable uploaded to every instance node when the run goes
on to launch. Nothing here decides whether to launch; the replay does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pdwizard.fsutil import atomic_write_text
from pdwizard.models import Session
from pdwizard.ranktable import build_ranktable, ranktable_json
from pdwizard.ranktable_upload import upload_ranktable
from pdwizard.remote.pool import RemotePool
from pdwizard.render import RenderedDeployment, discovery_inputs, needs_ranktable, render_all
from pdwizard.report import CheckResult, NodeFacts, Status, StepReport
from pdwizard.scripts import write_deployment


@dataclass
class Artifacts:
    """The rendered deployment and the ranktable text (None for connectors without one)."""

    deployment: RenderedDeployment
    ranktable: str | None
    written: list[Path] = field(default_factory=list)


def undiscovered(session: Session, facts: dict[str, NodeFacts]) -> list[str]:
    """Instance nodes discovery did not reach: nothing can be built for them."""
    return sorted({i.node for i in session.instances if i.node not in facts})


def build(session: Session, facts: dict[str, NodeFacts], source: str | None = None) -> Artifacts:
    """Render every command and the ranktable; InputError (exit 2) names the bad key."""
    inputs = discovery_inputs(session, facts)
    deployment = render_all(session, **inputs, source=source)
    text = ranktable_json(build_ranktable(session, facts)) if needs_ranktable(session) else None
    return Artifacts(deployment, text)


def write(art: Artifacts, session: Session, out: Path) -> Artifacts:
    """Write ranktable.json and one script per instance plus proxy.sh into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    if art.ranktable is not None:
        path = out / "ranktable.json"
        atomic_write_text(path, art.ranktable, mode=0o644)
        art.written.append(path)
    written = write_deployment(art.deployment, out, session_name=session.name)
    art.written.extend(written.paths)
    return art


def notes_step(step: StepReport, art: Artifacts) -> None:
    """Connector notes (keys with no effect, known pitfalls) as warnings in the report."""
    for note in art.deployment.notes:
        step.add(CheckResult(check="render", node="-", status=Status.WARN, message=note))
    step.add(CheckResult(check="render", node="-", status=Status.OK,
                         value=f"{len(art.deployment.instances)} instances, profile "
                               f"{art.deployment.profile.name}"))


async def upload(pool: RemotePool, session: Session, art: Artifacts, step: StepReport) -> None:
    """Push the ranktable to every instance node and confirm identical hashes."""
    if art.ranktable is None:
        return
    results = await upload_ranktable(pool, session, art.ranktable)
    for node, r in results.items():
        if r.ok:
            what = "written" + (f", previous kept as {r.backup}" if r.backup else "") if r.changed \
                else "unchanged"
            step.add(CheckResult(check="ranktable", node=node, status=Status.OK, value=r.sha256,
                                 target=r.path, message=what))
        else:
            step.add(CheckResult(check="ranktable", node=node, status=Status.FAIL, target=r.path,
                                 message=r.error or "the file on the node differs from what was sent",
                                 hint="check the directory is writable and has space on that node"))
    if len({r.sha256 for r in results.values()}) > 1:
        step.add(CheckResult(check="ranktable", node="-", status=Status.FAIL,
                             message="the nodes hold different ranktables",
                             hint="a shared path written by another run? re-run the upload"))


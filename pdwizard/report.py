"""What a run found: discovered facts, every verdict with its raw output and hint.

`report.json` is written from these models. A verdict always keeps the raw text
it was read from, so an operator (or a later tool) can see why it passed or failed
without re-running anything.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from pdwizard import __version__
from pdwizard.fsutil import atomic_write_text


class Status(str, Enum):
    """Ordered worst-last so `worst()` can take the max."""

    SKIP = "skip"
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


_RANK = {Status.SKIP: 0, Status.OK: 1, Status.WARN: 2, Status.FAIL: 3}


def worst(statuses: "list[Status] | tuple[Status, ...]") -> Status:
    """The status of a group: any failure fails it; nothing at all is OK."""
    return max(statuses, key=_RANK.__getitem__, default=Status.OK)


class NpuFacts(BaseModel):
    """One NPU chip as discovery saw it. `device` is the id hccn_tool -i takes."""

    device: int
    npu_id: int
    chip_id: int = 0
    name: str | None = None
    health: str | None = None
    hbm_used_mb: int | None = None
    hbm_total_mb: int | None = None
    ip: str | None = None
    netmask: str | None = None
    vnic_ip: str | None = None
    sdid: int | None = None
    super_pod_id: int | None = None
    pids: list[int] = Field(default_factory=list)


class ModelFacts(BaseModel):
    """The session's [model] path as one node's serving runtime sees it."""

    path: str                                  # what was probed
    present: bool | None = None                # a directory at path (None: the probe gave no output)
    config_sha256: str | None = None           # sha256 of path/config.json (None: no readable file)
    config: dict[str, Any] | None = None       # config.json parsed (None: absent, or not a JSON object)


class NodeFacts(BaseModel):
    """One node as discovery saw it."""

    node: str
    hostname: str | None = None
    addresses: list[str] = Field(default_factory=list)
    nics: dict[str, list[str]] = Field(default_factory=dict)
    soc: str | None = None
    driver_version: str | None = None
    cann_version: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)
    npus: list[NpuFacts] = Field(default_factory=list)
    hccn_conf: dict[int, dict[str, str]] | None = None
    model: ModelFacts | None = None            # None: the model was not probed on this node
    sim_host: str | None = None                # a SIMULATED node's loopback address (None: a real node)

    def npu(self, device: int) -> NpuFacts | None:
        return next((n for n in self.npus if n.device == device), None)

    @property
    def devices(self) -> set[int]:
        return {n.device for n in self.npus}


class CheckResult(BaseModel):
    """One verdict: which check, where, what was seen, the raw text, what to do."""

    check: str
    node: str
    device: int | None = None
    target: str | None = None
    status: Status
    value: str | None = None
    message: str | None = None
    raw: str | None = None
    hint: str | None = None
    data: dict[str, Any] | None = None  # structured values (verify: timings, served by, the answer)

    @property
    def where(self) -> str:
        parts = [f"node {self.node}"]
        if self.device is not None:
            parts.append(f"NPU {self.device}")
        if self.target:
            parts.append(f"-> {self.target}")
        return " ".join(parts)


class StepReport(BaseModel):
    """A step of the flow (connect, discovery, fabric, ping, ...)."""

    name: str
    status: Status = Status.OK
    duration_s: float = 0.0
    note: str | None = None
    results: list[CheckResult] = Field(default_factory=list)

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        return result

    def finish(self, duration_s: float) -> None:
        self.duration_s = round(duration_s, 3)
        self.status = worst([r.status for r in self.results])

    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status is Status.FAIL]


class Report(BaseModel):
    """The whole run; `report.json` is this model."""

    pdwizard_version: str = __version__
    session: str
    simulated: bool = False
    status: Status = Status.OK
    exit_code: int = 0
    started_at: str
    duration_s: float = 0.0
    steps: list[StepReport] = Field(default_factory=list)
    nodes: dict[str, NodeFacts] = Field(default_factory=dict)

    def step(self, name: str) -> StepReport:
        step = StepReport(name=name)
        self.steps.append(step)
        return step

    def failures(self) -> list[CheckResult]:
        return [r for s in self.steps for r in s.failures()]

    def write(self, path: Path) -> None:
        text = json.dumps(self.model_dump(mode="json"), indent=2) + "\n"
        atomic_write_text(path, text, mode=0o644)

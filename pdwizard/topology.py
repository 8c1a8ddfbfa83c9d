"""The topology step's logic, without Textual: instances from selected NPUs.

The operator selects NPUs of one node and makes them a prefill or a decode instance. This
module says what each NPU is (free, serving an instance, busy, unhealthy, without an NPU
IP), why a device cannot be chosen without the operator's word, which port a new instance
gets, the xPyD summary ("1P2D, 2 + 4 NPUs") and what blocks the step. The instances live
in `wizard.data["instances"]` (plain TOML data); every change calls
`wizard.changed("instances")` so the later steps run again.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pdwizard.errors import InputError
from pdwizard.report import NodeFacts, NpuFacts

if TYPE_CHECKING:
    from pdwizard.wizard import Wizard

#: The first vLLM API port a new instance gets (the guide's, and the demo's, --port). Later
#: instances on the same node take the next free one: 13701, 13702 ...
FIRST_PORT = 13700
#: The proxy's port when the session does not set one (models.Proxy.port).
DEFAULT_PROXY_PORT = 8080
ROLE_LETTER = {"prefill": "P", "decode": "D"}


class CellState(enum.Enum):
    """What one NPU is, as the grid shows it (the first that applies, in this order)."""

    PREFILL = "prefill"        # serves a prefill instance
    DECODE = "decode"          # serves a decode instance
    SELECTED = "selected"      # in the selection being built
    BUSY = "busy"              # processes hold it (npu-smi lists pids)
    UNHEALTHY = "unhealthy"    # npu-smi health is not OK
    NO_IP = "no_ip"            # hccn_tool printed no NPU IP
    FREE = "free"


@dataclass(frozen=True)
class Cell:
    """One NPU of the grid. `risk`: why choosing it needs the operator's word (None: it does
    not); `accepted`: the operator gave it."""

    node: str
    device: int
    state: CellState
    label: str = ""               # the instance it serves ("P1", "D2"), else ""
    risk: str | None = None
    accepted: bool = False
    health: str | None = None

    @property
    def warned(self) -> bool:
        """A risky device in use or selected without the operator's word."""
        return self.risk is not None and not self.accepted


@dataclass(frozen=True)
class NodeRow:
    """One node of the grid: its NPUs, or why there are none (`note`)."""

    node: str
    cells: list[Cell]
    note: str | None = None


@dataclass(frozen=True)
class InstanceRow:
    """One instance as the list shows it; `port` is what the data holds (maybe a typo)."""

    index: int
    label: str
    role: str
    node: str
    devices: list[int]
    tp: int
    port: Any
    kv_port: str


@dataclass(frozen=True)
class Outcome:
    """The answer to an operator's action: done (`ok`), refused (`message` says why), or
    waiting on a confirmation (`confirm` is the risk to show)."""

    ok: bool
    message: str = ""
    confirm: str | None = None


# ---------------------------------------------------------------------------------------
# pure helpers


def npu_risk(npu: NpuFacts | None) -> str | None:
    """Why a device should not be chosen silently: processes hold it, it is unhealthy, or
    it has no NPU IP (the ranktable and HCCL need one). None when it is fine."""
    if npu is None:
        return None
    out = []
    if npu.pids:
        out.append(f"busy: held by pid {', '.join(map(str, npu.pids))}")
    health = (npu.health or "unknown")
    if health.upper() != "OK":
        out.append(f"unhealthy: health {health}")
    if not npu.ip:
        out.append("no NPU IP (hccn_tool -ip -g printed none)")
    return "; ".join(out) or None


def labels(instances: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each instance's short name: P1, P2 ... and D1, D2 ... in list order per role."""
    seen: dict[str, int] = {}
    out = []
    for inst in instances:
        letter = ROLE_LETTER.get(str(inst.get("role")), "?")
        seen[letter] = seen.get(letter, 0) + 1
        out.append(f"{letter}{seen[letter]}")
    return out


def tp_of(inst: Mapping[str, Any]) -> int:
    """The instance's tensor-parallel size: tensor_parallel_size, else its device count."""
    tp = inst.get("tensor_parallel_size")
    return tp if isinstance(tp, int) else len(inst.get("devices") or ())


def summary(instances: Sequence[Mapping[str, Any]]) -> str:
    """The xPyD summary: "1P2D, 2 + 4 NPUs · TP prefill 2, decode 2"."""
    if not instances:
        return "no instances yet"
    by_role = {r: [i for i in instances if i.get("role") == r] for r in ("prefill", "decode")}
    npus = {r: sum(len(i.get("devices") or ()) for i in insts) for r, insts in by_role.items()}
    tps = {r: "/".join(str(t) for t in sorted({tp_of(i) for i in insts})) or "-" for r, insts in by_role.items()}
    shape = f"{len(by_role['prefill'])}P{len(by_role['decode'])}D"
    return f"{shape}, {npus['prefill']} + {npus['decode']} NPUs · TP prefill {tps['prefill']}, decode {tps['decode']}"


def proxy_node(data: Mapping[str, Any]) -> str | None:
    """Where the proxy runs: proxy.node, else the first prefill instance's node."""
    node = (data.get("proxy") or {}).get("node")
    if node:
        return str(node)
    return next((str(i.get("node")) for i in data.get("instances", []) if i.get("role") == "prefill"), None)


def next_port(data: Mapping[str, Any], node: str, role: str = "decode") -> int:
    """The port a new instance on `node` gets: the first from 13700 up that no instance on
    that node uses, and not the proxy's port when the proxy runs there. 13700 is the guide's
    --port; the RPC (5557 + 100 k) and Mooncake kv (36000 +) ranges lie well clear of it."""
    used = {i.get("port") for i in data.get("instances", []) if i.get("node") == node}
    where = proxy_node(data) or (node if role == "prefill" else None)
    if where == node:
        used.add((data.get("proxy") or {}).get("port", DEFAULT_PROXY_PORT))
    port = FIRST_PORT
    while port in used:
        port += 1
    return port


def problem_text(err: InputError) -> str:
    """A problem for one line of the screen: key, what is wrong, the fix (no file name)."""
    text = err.message
    if err.source and text.startswith(f"{err.source}: "):
        text = text[len(err.source) + 2:]
    return f"{text} (fix: {err.hint})" if err.hint else text


def missing_devices(instances: Sequence[Mapping[str, Any]], facts: Mapping[str, NodeFacts]) -> list[InputError]:
    """Instances naming an NPU their (discovered) node does not have."""
    out = []
    for i, inst in enumerate(instances):
        f = facts.get(str(inst.get("node")))
        if f is None or not f.npus:
            continue
        gone = [d for d in inst.get("devices") or () if d not in f.devices]
        if gone:
            have = ", ".join(map(str, sorted(f.devices)))
            out.append(InputError(f"node {inst.get('node')} has no NPU {', '.join(map(str, gone))} (it has: {have})",
                                  key=f"instances[{i}].devices",
                                  hint="remove the instance (x) and choose its NPUs on the grid"))
    return out


# ---------------------------------------------------------------------------------------
# the editor


@dataclass
class Selection:
    """The NPUs being gathered into the next instance: one node's."""

    node: str | None = None
    devices: list[int] = field(default_factory=list)

    def clear(self) -> None:
        self.node, self.devices = None, []


class TopologyEditor:
    """Builds `wizard.data["instances"]` from NPU selections. It reads the wizard's data and
    facts live (a replaced session is seen at once) and remembers the risky devices the
    operator accepted (keyed by the risk text: a new pid or health asks again)."""

    def __init__(self, wizard: Wizard) -> None:
        self.wizard = wizard
        self.selection = Selection()
        self.accepted: set[tuple[str, int, str]] = set()

    # ---------------------------------------------------------------- reading

    @property
    def instances(self) -> list[dict[str, Any]]:
        return self.wizard.data.setdefault("instances", [])

    @property
    def facts(self) -> Mapping[str, NodeFacts]:
        return self.wizard.facts

    def node_names(self) -> list[str]:
        return [str(n.get("name")) for n in self.wizard.data.get("nodes", [])]

    def risk(self, node: str, device: int) -> str | None:
        f = self.facts.get(node)
        return npu_risk(f.npu(device)) if f is not None else None

    def is_accepted(self, node: str, device: int) -> bool:
        risk = self.risk(node, device)
        return risk is None or (node, device, risk) in self.accepted

    def owner(self, node: str, device: int) -> int | None:
        """The index of the instance serving `device` on `node`, else None."""
        return next((i for i, inst in enumerate(self.instances)
                     if inst.get("node") == node and device in (inst.get("devices") or ())), None)

    def cell(self, node: str, device: int) -> Cell:
        npu = self.facts[node].npu(device) if node in self.facts else None
        risk = npu_risk(npu)
        accepted = self.is_accepted(node, device)
        health = npu.health if npu is not None else None
        owner = self.owner(node, device)
        if owner is not None:
            state = CellState.PREFILL if self.instances[owner].get("role") == "prefill" else CellState.DECODE
            return Cell(node, device, state, labels(self.instances)[owner], risk, accepted, health)
        if self.selection.node == node and device in self.selection.devices:
            state = CellState.SELECTED
        elif npu is not None and npu.pids:
            state = CellState.BUSY
        elif npu is not None and (npu.health or "").upper() != "OK":
            state = CellState.UNHEALTHY
        elif npu is not None and not npu.ip:
            state = CellState.NO_IP
        else:
            state = CellState.FREE
        return Cell(node, device, state, "", risk, accepted, health)

    def rows(self) -> list[NodeRow]:
        """The grid: one row per node of the session, its discovered NPUs in id order."""
        out = []
        for node in self.node_names():
            f = self.facts.get(node)
            if f is None:
                out.append(NodeRow(node, [], "not discovered: connect it in the Nodes step"))
            elif not f.npus:
                out.append(NodeRow(node, [], "no NPU found (npu-smi info lists none)"))
            else:
                out.append(NodeRow(node, [self.cell(node, d) for d in sorted(f.devices)]))
        return out

    def instance_rows(self) -> list[InstanceRow]:
        names = labels(self.instances)
        out = []
        for i, inst in enumerate(self.instances):
            kv = inst.get("kv_port")
            out.append(InstanceRow(i, names[i], str(inst.get("role")), str(inst.get("node")),
                                   list(inst.get("devices") or ()), tp_of(inst), inst.get("port"),
                                   "auto" if kv is None else str(kv)))
        return out

    def summary(self) -> str:
        return summary(self.instances)

    def describe(self, node: str, device: int) -> str:
        """One line about an NPU (for the cursor): what it serves, its state, memory and IP."""
        cell = self.cell(node, device)
        npu = self.facts[node].npu(device) if node in self.facts else None
        parts = [f"{node} NPU {device}"]
        if cell.label:
            inst = self.instances[self.owner(node, device)]  # type: ignore[index]
            parts.append(f"{cell.label} {inst.get('role')} port {inst.get('port')}")
        elif cell.state is CellState.SELECTED:
            parts.append("selected")
        parts.append(cell.risk or "healthy, no process holds it")
        if cell.risk and cell.accepted:
            parts.append("accepted")
        if npu is not None:
            if npu.hbm_used_mb is not None:
                parts.append(f"HBM {npu.hbm_used_mb}/{npu.hbm_total_mb or '?'} MB")
            if npu.ip:
                parts.append(f"IP {npu.ip}")
        return " · ".join(parts)

    def selection_text(self) -> str:
        sel = self.selection
        if not sel.devices:
            return "select NPUs of one node (space / click), then p or d"
        devs = ", ".join(map(str, sel.devices))
        return f"selected {sel.node} NPU {devs} → TP {len(sel.devices)} · p prefill, d decode"

    # ---------------------------------------------------------------- problems

    def problems(self) -> list[InputError]:
        """What is wrong with the instances: the session's rules, then NPUs nodes lack."""
        return self.wizard.problems("instances") + missing_devices(self.instances, self.facts)

    def port_problems(self) -> dict[int, str]:
        """Instance index -> the problem of its port, for the inline error beside it."""
        out: dict[int, str] = {}
        for p in self.wizard.problems("instances["):
            head, _, rest = (p.key or "").partition("].")
            if rest == "port" and head[len("instances["):].isdigit():
                out.setdefault(int(head[len("instances["):]), problem_text(p))
        return out

    def unaccepted(self) -> list[str]:
        """Risky devices that instances use without the operator's word."""
        names = labels(self.instances)
        out = []
        for i, inst in enumerate(self.instances):
            node = str(inst.get("node"))
            for d in inst.get("devices") or ():
                if not self.is_accepted(node, d):
                    out.append(f"{names[i]} on {node} NPU {d}: {self.risk(node, d)}")
        return out

    def blocker(self) -> str | None:
        """Why Next is refused, or None."""
        roles = {i.get("role") for i in self.instances}
        if not {"prefill", "decode"} <= roles:
            return "choose at least one prefill and one decode instance"
        problems = self.problems()
        if problems:
            return problem_text(problems[0])
        risky = self.unaccepted()
        if risky:
            return f"{risky[0]} (select the NPU to accept it, or remove the instance)"
        return None

    # ---------------------------------------------------------------- changing

    def pick(self, node: str, device: int) -> Outcome:
        """Toggle `device` in the selection. A device serving an instance is refused (or, if
        risky and not accepted yet, asks for the operator's word); a device of another node
        than the selection's is refused; a risky one asks first (`Outcome.confirm`)."""
        owner = self.owner(node, device)
        if owner is not None:
            if not self.is_accepted(node, device):
                return Outcome(False, confirm=self.risk(node, device))
            name = labels(self.instances)[owner]
            return Outcome(False, f"{node} NPU {device} serves {name}: remove {name} (x) to choose it again")
        sel = self.selection
        if sel.node == node and device in sel.devices:
            sel.devices.remove(device)
            if not sel.devices:
                sel.clear()
            return Outcome(True, f"{node} NPU {device} unselected")
        if sel.devices and sel.node != node:
            return Outcome(False, f"an instance runs on one node: the selection is on {sel.node}; "
                                  f"make it an instance (p / d) or clear it (esc) before choosing {node} NPUs")
        if not self.is_accepted(node, device):
            return Outcome(False, confirm=self.risk(node, device))
        sel.node = node
        sel.devices = sorted({*sel.devices, device})
        return Outcome(True, f"{node} NPU {device} selected")

    def accept(self, node: str, device: int) -> Outcome:
        """The operator chose a risky device knowingly: remember it, then pick it (unless
        it already serves an instance, which it keeps serving)."""
        risk = self.risk(node, device)
        if risk is not None:
            self.accepted.add((node, device, risk))
        if self.owner(node, device) is not None:
            return Outcome(True, f"{node} NPU {device} accepted ({risk})")
        return self.pick(node, device)

    def make(self, role: str) -> Outcome:
        """Make the selection an instance of `role` on the next free port of its node."""
        sel = self.selection
        if not sel.devices or sel.node is None:
            return Outcome(False, f"select the NPUs of the {role} instance first (space or click on the grid)")
        inst = {"role": role, "node": sel.node, "devices": list(sel.devices),
                "port": next_port(self.wizard.data, sel.node, role)}
        self.instances.append(inst)
        sel.clear()
        self.wizard.changed("instances")
        name = labels(self.instances)[-1]
        return Outcome(True, f"{name}: {role} on {inst['node']} NPU {', '.join(map(str, inst['devices']))} "
                             f"(TP {len(inst['devices'])}), port {inst['port']}")

    def remove_at(self, node: str, device: int) -> Outcome:
        """Remove the instance serving `device` on `node`."""
        owner = self.owner(node, device)
        if owner is None:
            return Outcome(False, f"{node} NPU {device} serves no instance: move the cursor onto one to remove it")
        return self.remove(owner)

    def remove(self, index: int) -> Outcome:
        name = labels(self.instances)[index]
        inst = self.instances.pop(index)
        self.wizard.changed("instances")
        return Outcome(True, f"{name} removed: {inst.get('node')} NPU "
                             f"{', '.join(map(str, inst.get('devices') or ()))} are free again")

    def set_port(self, index: int, text: str) -> None:
        """The operator typed a port: kept as typed (a number when it is one), so the
        session's own validation says what is wrong with it."""
        text = text.strip()
        value: Any = int(text) if text.isascii() and text.isdigit() else text
        if self.instances[index].get("port") != value:
            self.instances[index]["port"] = value
            self.wizard.changed("instances")

    def prune(self) -> None:
        """Drop from the selection what no longer fits (another session, a removed node,
        devices now serving an instance)."""
        sel = self.selection
        if sel.node not in self.node_names():
            sel.clear()
            return
        sel.devices = [d for d in sel.devices if self.owner(sel.node, d) is None]
        if not sel.devices:
            sel.clear()

"""Which NPU pings which: the cross-node ping matrix, bounded per node.

Each selected NPU pings selected NPUs on the *other* nodes (intra-node traffic goes
over HCCS, and on A3 the two dies of one NPU are not RoCE-connected, so no
same-node pair is ever planned). Pings on one node run one after another
(concurrent hccn_tool calls answer "busy"), so a full matrix costs
O(nodes x NPUs^2) per node: 960 pings per node on 16 nodes of 8 NPUs. In "auto"
mode the full matrix is used while it fits the per-node budget; beyond it a
covering sample is taken, ordered so that the first pings reach every other node
and every NPU both sends and is pinged, then filling the budget. "full" forces the
whole matrix, "off" skips it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

PingMode = Literal["auto", "full", "off"]


@dataclass(frozen=True)
class Endpoint:
    """One NPU as a ping source or target."""

    node: str
    device: int
    ip: str


@dataclass(frozen=True)
class Ping:
    src: Endpoint
    dst: Endpoint


@dataclass
class PingPlan:
    """The pings each node runs, and how they relate to the full matrix."""

    by_node: dict[str, list[Ping]] = field(default_factory=dict)
    full_size: int = 0
    mode: str = "full"
    covers: dict[str, bool] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return sum(len(p) for p in self.by_node.values())

    def describe(self) -> str:
        """The line printed before the pings start (operators like to know the cost)."""
        if self.mode == "off":
            return "ping matrix: off ([checks] ping = \"off\")"
        per_node = max((len(p) for p in self.by_node.values()), default=0)
        text = f"ping matrix: {self.size} pings over {len(self.by_node)} nodes, at most {per_node} per node"
        if self.mode == "sampled":
            held = [text for key, text in (("nodes", "every other node reached"),
                                           ("senders", "every NPU sends"),
                                           ("targets", "every NPU is pinged")) if self.covers.get(key)]
            text += (f" (a sample of the full {self.full_size}"
                     + (": " + ", ".join(held) if held else "")
                     + "; set [checks] ping = \"full\" for all of it)")
        return text


def plan_pings(endpoints: Mapping[str, Sequence[Endpoint]], mode: PingMode = "auto",
               budget: int = 48) -> PingPlan:
    """Plan the pings; `endpoints` maps node name to its selected NPUs, in node order."""
    nodes = list(endpoints)
    full = {a: _ordered_pairs(a, nodes, endpoints) for a in nodes}
    plan = PingPlan(full_size=sum(len(p) for p in full.values()))
    if mode == "off":
        plan.mode = "off"
        plan.by_node = {a: [] for a in nodes}
        return plan
    too_big = any(len(p) > budget for p in full.values())
    plan.mode = "sampled" if mode == "auto" and too_big else "full"
    limit = budget if plan.mode == "sampled" else None
    plan.by_node = {a: pairs[:limit] for a, pairs in full.items()}
    plan.covers = coverage(plan, endpoints)
    return plan


def _ordered_pairs(a: str, nodes: list[str], endpoints: Mapping[str, Sequence[Endpoint]]) -> list[Ping]:
    """Every pair from node `a`, in coverage-first order.

    Round r pings each other node b once: at NPU position rank + r*(N-1) of b,
    where rank is a's place among b's N-1 sources, so the sources of b sweep b's
    NPUs without overlap; a's own NPUs take turns as the sender. After R full
    rounds every other node was reached R times, and if R*(N-1) is at least the
    NPU count every NPU has sent and been pinged. The rest of the full matrix
    follows, so a prefix of any length is a sample and the whole list is the matrix.
    """
    sources = list(endpoints[a])
    others = [b for b in nodes if b != a and endpoints[b]]
    if not sources or not others:
        return []
    n = len(nodes)
    ordered: list[Ping] = []
    seen: set[tuple[int, int, int]] = set()

    def take(i: int, b: str, j: int) -> None:
        key = (i, nodes.index(b), j)
        if key not in seen:
            seen.add(key)
            ordered.append(Ping(sources[i], endpoints[b][j]))

    rounds = max(len(endpoints[b]) for b in others) * len(sources)
    sent = 0
    for r in range(rounds):
        for b in _after(a, others, nodes):
            rank = (nodes.index(a) - nodes.index(b) - 1) % n
            take(sent % len(sources), b, (rank + r * (n - 1)) % len(endpoints[b]))
            sent += 1
    for i in range(len(sources)):
        for b in others:
            for j in range(len(endpoints[b])):
                take(i, b, j)
    return ordered


def _after(a: str, others: list[str], nodes: list[str]) -> list[str]:
    """Other nodes starting after a, so different sources start on different nodes."""
    ia = nodes.index(a)
    return sorted(others, key=lambda b: (nodes.index(b) - ia) % len(nodes))


def coverage(plan: PingPlan, endpoints: Mapping[str, Sequence[Endpoint]]) -> dict[str, bool]:
    """What a (sampled) plan still guarantees, so describe() claims only what holds."""
    pairs = [p for ps in plan.by_node.values() for p in ps]
    senders = {(p.src.node, p.src.device) for p in pairs}
    targets = {(p.dst.node, p.dst.device) for p in pairs}
    everyone = {(e.node, e.device) for eps in endpoints.values() for e in eps}
    nodes_reached = all({p.dst.node for p in plan.by_node.get(a, [])} >= set(endpoints) - {a}
                        for a in endpoints if any(endpoints[b] for b in endpoints if b != a))
    return {"nodes": nodes_reached, "senders": senders >= everyone, "targets": targets >= everyone}

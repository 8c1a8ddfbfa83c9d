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
            text += (f" (a covering sample of the full {self.full_size}: every other node reached,"
                     " every NPU sends and is pinged; set [checks] ping = \"full\" for all of it)")
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
    return plan


def _targets(a: str, nodes: list[str], endpoints: Mapping[str, Sequence[Endpoint]]) -> list[Endpoint]:
    """Other nodes' NPUs, interleaved across nodes, starting at a per-source offset.

    Interleaving makes the first pings reach every other node; the offset (the
    source's index) makes different sources start on different NPU positions, so
    a truncated plan still targets every NPU of every node from somewhere.
    """
    ia = nodes.index(a)
    others = nodes[ia + 1:] + nodes[:ia]
    width = max((len(endpoints[b]) for b in others), default=0)
    order: list[Endpoint] = []
    for step in range(width):
        pos = (ia + step) % width
        order.extend(endpoints[b][pos] for b in others if pos < len(endpoints[b]))
    return order


def _ordered_pairs(a: str, nodes: list[str], endpoints: Mapping[str, Sequence[Endpoint]]) -> list[Ping]:
    """All pairs from node `a`, in coverage-first order.

    Pairs come in blocks: block d pairs source i with target (i + d). Blocks are
    taken in the order d = 0, k, 2k, ... then 1, k+1, ... (k = number of sources),
    so the first blocks sweep all targets once before any target is repeated,
    and every block uses every source.
    """
    sources = list(endpoints[a])
    targets = _targets(a, nodes, endpoints)
    k, t = len(sources), len(targets)
    if not k or not t:
        return []
    blocks = sorted(range(t), key=lambda d: (d % k, d // k))
    return [Ping(src, targets[(i + d) % t]) for d in blocks for i, src in enumerate(sources)]
